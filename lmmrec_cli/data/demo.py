"""The built-in ``demo`` data set: a small, synthetic world of diners and restaurants.

It is synthetic (generated, not collected) and exists so that the quickstart, the tests and CI
have data with the structure LMMRec assumes, without any download:

* every restaurant offers a few *aspects* (its strengths, named in its description) and has one
  or two *flaws* (named in no description; they surface only in reviews);
* every diner *seeks* two or three aspects (active motivations) and *avoids* one or two flaws
  (passive motivations);
* a diner visits a restaurant with a probability that grows with the aspects it offers that the
  diner seeks, shrinks with its flaws that the diner avoids, and follows a long-tailed
  popularity;
* every visit has a rating and a review that says what pleased the diner and, when a flaw met an
  aversion, what disappointed them.

So motivations are recoverable from text (item descriptions, training reviews), and a model that
reads them can find matches that sparse interactions alone hide, especially for the many
rarely visited restaurants in the tail. Generation is deterministic for a given seed and size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lmmrec_cli.data.records import ItemText, Review


@dataclass(frozen=True)
class Aspect:
    name: str  # the motivation, as a person would name it
    praise: tuple[str, ...]  # review phrases when the aspect is there and wanted
    complaint: tuple[str, ...]  # review phrases when the flaw met an aversion
    category: str


ASPECTS: tuple[Aspect, ...] = (
    Aspect("spicy food", ("the dishes had real chili heat", "the spicy curry was fiery and bold"),
           ("the food was bland with no heat at all", "nothing on the menu had any spice"), "thai"),
    Aspect("vegan options", ("plenty of vegan dishes to choose from", "the vegan menu was creative"),
           ("there was nothing vegan on the menu", "even the salads came with meat"), "vegan"),
    Aspect("quiet atmosphere", ("a calm and quiet room where we could talk", "wonderfully quiet and relaxed"),
           ("it was far too loud to hold a conversation", "the noise was unbearable"), "wine bar"),
    Aspect("fast service", ("the service was quick and attentive", "food arrived fast"),
           ("we waited almost an hour for the food", "service was painfully slow"), "diner"),
    Aspect("live music", ("a great live band played all evening", "the live jazz was a treat"),
           ("they dropped the live music nights", "no band, just a silent stage"), "music venue"),
    Aspect("large portions", ("the portions were huge", "generous plates, I took half home"),
           ("tiny portions for the price", "I left hungry, the plates were small"), "american"),
    Aspect("cheap prices", ("very affordable prices", "great value for the money"),
           ("shockingly overpriced", "the bill was far too expensive"), "fast food"),
    Aspect("craft beer", ("an excellent craft beer list", "rotating local craft beers on tap"),
           ("the beer selection was poor and warm", "only one bland lager on tap"), "brewery"),
    Aspect("outdoor seating", ("lovely outdoor seating on the patio", "we sat outside on the terrace"),
           ("no outdoor seating at all", "the patio was closed and dirty"), "beer garden"),
    Aspect("kid friendly", ("very welcoming to kids, with a children's menu", "our kids loved it"),
           ("staff were rude about our children", "not a place for kids at all"), "family"),
    Aspect("late night hours", ("open late, perfect after a show", "still serving after midnight"),
           ("the kitchen closed way too early", "they turned us away at nine"), "late night"),
    Aspect("fresh seafood", ("the seafood was incredibly fresh", "the oysters tasted of the sea"),
           ("the fish smelled off", "the seafood was not fresh"), "seafood"),
    Aspect("homemade desserts", ("the homemade desserts were divine", "the pie was clearly baked in house"),
           ("the desserts were frozen and stale", "the cake tasted store bought"), "bakery"),
    Aspect("strong coffee", ("the coffee was rich and strong", "an excellent espresso"),
           ("the coffee was weak and watery", "burnt bitter coffee"), "cafe"),
    Aspect("free wifi", ("fast free wifi, great for working", "reliable wifi and power outlets"),
           ("the wifi never worked", "no wifi and no outlets"), "coworking cafe"),
    Aspect("easy parking", ("parking was easy right outside", "a big free parking lot"),
           ("impossible to find parking", "parking was a nightmare"), "roadside"),
    Aspect("authentic italian", ("pasta just like in Italy", "authentic italian cooking"),
           ("the italian food tasted fake", "soggy pasta, nothing authentic"), "italian"),
    Aspect("fresh sushi", ("beautiful fresh sushi and sashimi", "the best nigiri in town"),
           ("the sushi rice was cold and hard", "sad, dry sushi"), "japanese"),
    Aspect("weekend brunch", ("a fantastic weekend brunch", "the eggs benedict at brunch were perfect"),
           ("brunch was a chaotic mess", "they ran out of brunch dishes by ten"), "brunch"),
    Aspect("creative cocktails", ("inventive cocktails made with care", "the bartender mixed amazing cocktails"),
           ("the cocktails were watered down", "sugary, badly made cocktails"), "cocktail bar"),
)

_ADJECTIVES = ("Golden", "Blue", "Rusty", "Little", "Crimson", "Silver", "Lucky", "Green", "Old",
               "Hidden", "Sunny", "Wild", "Velvet", "Copper", "Happy", "Quiet", "Iron", "Amber")
_NOUNS = ("Spoon", "Lantern", "Fork", "Table", "Kettle", "Oven", "Garden", "Anchor", "Barrel",
          "Corner", "Harbor", "Lemon", "Pepper", "Olive", "Whistle", "Bridge", "Owl", "Fig")
_FILLERS = ("We went on a Friday evening.", "I came here with friends.", "This was my second visit.",
            "Stopped by after work.", "Visited with my partner.", "Came for a birthday dinner.",
            "Tried it on a recommendation.", "", "")


@dataclass(frozen=True)
class DemoWorld:
    """The generated world, including the hidden ground truth (for tests and explanations)."""

    reviews: list[Review]
    items: list[ItemText]
    user_seeks: list[tuple[int, ...]]  # aspect indices per user
    user_avoids: list[tuple[int, ...]]
    item_offers: list[tuple[int, ...]]
    item_flaws: list[tuple[int, ...]]


def _restaurant_name(item: int) -> str:
    n_adj, n_noun = len(_ADJECTIVES), len(_NOUNS)
    name = f"The {_ADJECTIVES[item % n_adj]} {_NOUNS[(item // n_adj) % n_noun]}"
    if item >= n_adj * n_noun:
        name += f" {item // (n_adj * n_noun) + 1}"
    return name


def _aspect_sets(rng: np.random.Generator, count: int, first: tuple[int, int], second: tuple[int, int]):
    """``count`` pairs of disjoint aspect sets with sizes drawn from the given ranges."""
    pairs = []
    for _ in range(count):
        n_first = int(rng.integers(first[0], first[1] + 1))
        n_second = int(rng.integers(second[0], second[1] + 1))
        chosen = rng.choice(len(ASPECTS), size=n_first + n_second, replace=False)
        pairs.append(
            (tuple(sorted(int(a) for a in chosen[:n_first])), tuple(sorted(int(a) for a in chosen[n_first:])))
        )
    return pairs


def _incidence(sets: list[tuple[int, ...]]) -> np.ndarray:
    matrix = np.zeros((len(sets), len(ASPECTS)))
    for row, members in enumerate(sets):
        matrix[row, list(members)] = 1.0
    return matrix


def generate_demo(n_users: int = 600, n_items: int = 400, seed: int = 7) -> DemoWorld:
    """Generate the demo world. Same arguments, same world."""
    rng = np.random.default_rng(seed)
    item_offers, item_flaws = map(list, zip(*_aspect_sets(rng, n_items, (3, 4), (1, 2)), strict=True))
    user_seeks, user_avoids = map(list, zip(*_aspect_sets(rng, n_users, (2, 3), (1, 2)), strict=True))

    matches = _incidence(user_seeks) @ _incidence(item_offers).T  # [U, I] wanted and offered
    clashes = _incidence(user_avoids) @ _incidence(item_flaws).T  # [U, I] flaw meets aversion
    # Long-tailed popularity: a few restaurants are busy, most are rarely visited.
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.8
    popularity = popularity[rng.permutation(n_items)]
    logits = 2.2 * matches - 2.5 * clashes + np.log(popularity)[None, :]

    reviews: list[Review] = []
    base_time = 1_500_000_000
    for user in range(n_users):
        n_visits = int(np.clip(rng.zipf(1.8) + 9, 10, 40))
        weights = np.exp(logits[user] - logits[user].max())
        visited = rng.choice(n_items, size=n_visits, replace=False, p=weights / weights.sum())
        for visit_number, item in enumerate(int(i) for i in visited):
            liked = [a for a in user_seeks[user] if a in item_offers[item]]
            hurt = [a for a in user_avoids[user] if a in item_flaws[item]]
            rating = float(np.clip(3 + len(liked) - 2 * len(hurt) + rng.integers(-1, 2), 1, 5))
            sentences = [str(rng.choice(_FILLERS))]
            sentences += [f"{str(rng.choice(ASPECTS[a].praise)).capitalize()}." for a in liked]
            sentences += [f"Sadly {rng.choice(ASPECTS[a].complaint)}." for a in hurt]
            if not liked and not hurt:
                sentences.append("It was fine, nothing special for me.")
            summary = "Loved it" if rating >= 4 else ("Disappointing" if rating <= 2 else "Okay")
            reviews.append(
                Review(
                    user_id=f"diner_{user:04d}",
                    item_id=f"place_{item:04d}",
                    rating=rating,
                    timestamp=base_time + user * 10_000 + visit_number * 86_400,
                    text=" ".join(s for s in sentences if s),
                    summary=summary,
                    line=len(reviews) + 1,
                )
            )

    items: list[ItemText] = []
    for item in range(n_items):
        offers = [ASPECTS[a].name for a in item_offers[item]]
        categories = ", ".join(sorted({ASPECTS[a].category for a in item_offers[item]}))
        known_for = f"{', '.join(offers[:-1])} and {offers[-1]}"
        items.append(
            ItemText(
                item_id=f"place_{item:04d}",
                title=_restaurant_name(item),
                text=f"Categories: restaurant, {categories}. Known for {known_for}.",
                line=item + 1,
            )
        )

    return DemoWorld(reviews, items, user_seeks, user_avoids, item_offers, item_flaws)
