"""What each entity's prompt is built from: item text and TRAINING reviews only.

Validation and test reviews describe the answers the recommender will be scored on; reading
them here would leak the test set into the text view. Every review used below comes from
``PreparedDataset.reviews(split="train")`` and, for a user, only from the user's training
interactions.

Choices are deterministic (a hash order, not a random draw), so the same dataset and settings
give byte-identical prompts and therefore cache hits on a rerun.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from lmmrec_cli.data.dataset import PreparedDataset
from lmmrec_cli.llm.ask import EntityRequest
from lmmrec_cli.llm.prompts import PromptSet, fenced, neutralise
from lmmrec_cli.motivations import Motivation


@dataclass(frozen=True)
class PromptOptions:
    item_reviews: int = 10  # training reviews shown per item
    user_items: int = 25  # training items shown per user (docs/method.md §1.2: ~20-30)
    review_chars: int = 500  # each review cut to this many characters
    description_chars: int = 1500

    def describe(self) -> dict[str, int]:
        return {
            "item_reviews": self.item_reviews,
            "user_items": self.user_items,
            "review_chars": self.review_chars,
            "description_chars": self.description_chars,
        }


def _order_after(first: object) -> Callable[[object], int]:
    """A stable pseudo-random sort key of ``second`` after ``first``: the CRC-32 of
    ``f"{first}\x1f{second}"`` (deterministic everywhere, and cheap enough for the hundreds
    of thousands of (user, item) pairs of a large dataset), with the CRC of ``first`` computed
    once: a CRC continued from a prefix's CRC is the CRC of the whole text."""
    prefix = zlib.crc32(f"{first}\x1f".encode())
    return lambda second: zlib.crc32(str(second).encode(), prefix)


def _rating_text(rating: object) -> str:
    try:
        value = float(rating)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "unrated"
    return "unrated" if math.isnan(value) else f"{value:g}/5"


class TrainingReviews:
    """The TRAINING reviews as plain lists, each review's fenced body rendered once.

    Built once per run: items and users both quote the same reviews, and rendering a body
    (neutralising untrusted text) is the costly part of building prompts.
    """

    def __init__(self, dataset: PreparedDataset, review_chars: int) -> None:
        # never validation or test text
        frame = dataset.columns(
            "reviews", ("user", "item", "rating", "summary", "text"), split="train"
        )
        self.users = [int(u) for u in frame["user"]]
        self.items = [int(i) for i in frame["item"]]
        self.ratings = frame["rating"]
        self.liked = [_is_liked(rating) for rating in self.ratings]
        self._summaries = frame["summary"]
        self._texts = frame["text"]
        self._limit = review_chars
        self._bodies: dict[int, str] = {}
        self.by_item: dict[int, list[int]] = {}
        self.by_pair: dict[tuple[int, int], int] = {}
        for row, (user, item) in enumerate(zip(self.users, self.items, strict=True)):
            self.by_item.setdefault(item, []).append(row)
            self.by_pair[(user, item)] = row

    def body(self, row: int) -> str:
        found = self._bodies.get(row)
        if found is None:
            summary = neutralise(self._summaries[row], 120)
            text = neutralise(self._texts[row], self._limit)
            head = f"Rating: {_rating_text(self.ratings[row])}"
            if summary:
                head += f" | Title: {summary}"
            found = f"{head}\n{text}" if text else head
            self._bodies[row] = found
        return found

    def pick_for_item(self, item: int, item_id: str, cap: int) -> list[int]:
        """Up to ``cap`` reviews, alternating liked and not-liked ones so the passive side
        is represented even when most reviews are positive."""
        order = _order_after(item_id)
        users = self.users
        rows = sorted(self.by_item.get(item, []), key=lambda r: order(users[r]))
        liked = [r for r in rows if self.liked[r]]
        others = [r for r in rows if not self.liked[r]]
        picked: list[int] = []
        while len(picked) < cap and (liked or others):
            for pool in (others, liked):
                if pool and len(picked) < cap:
                    picked.append(pool.pop(0))
        return picked


def _is_liked(rating: object) -> bool:
    try:
        value = float(rating)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return True
    return math.isnan(value) or value >= 4


def item_requests(
    dataset: PreparedDataset,
    prompts: PromptSet,
    options: PromptOptions,
    reviews: TrainingReviews | None = None,
) -> list[EntityRequest]:
    items = dataset.columns("items", ("item", "item_id", "title", "text"))
    reviews = reviews or TrainingReviews(dataset, options.review_chars)
    system = prompts.render("system")
    template_hash = prompts.step_hash("item")
    requests = []
    for index, item_id, title, text in zip(
        items["item"], items["item_id"], items["title"], items["text"], strict=True
    ):
        chosen = reviews.pick_for_item(int(index), item_id, options.item_reviews)
        blocks = [fenced("REVIEW", n, reviews.body(r)) for n, r in enumerate(chosen, start=1)]
        prompt = prompts.render(
            "item",
            title=neutralise(title, 300) or "(no title)",
            description=neutralise(text, options.description_chars) or "(none)",
            reviews="\n".join(blocks) if blocks else "(no training reviews)",
            review_count=len(blocks),
        )
        requests.append(
            EntityRequest(
                "item", int(index), str(item_id), (("system", system), ("user", prompt)), template_hash
            )
        )
    return requests


def _motivation_text(motivation: Motivation | None) -> str:
    if motivation is None:
        return "Item motivations: (not available)"
    lines = []
    if motivation.active:
        lines.append("Active: " + "; ".join(neutralise(a, 120) for a in motivation.active))
    if motivation.passive:
        lines.append("Passive: " + "; ".join(neutralise(p, 120) for p in motivation.passive))
    if motivation.summary:
        lines.append("Summary: " + neutralise(motivation.summary, 1200))
    return "\n".join(lines) or "Item motivations: (none)"


def user_requests(
    dataset: PreparedDataset,
    prompts: PromptSet,
    options: PromptOptions,
    item_motivations: Mapping[int, Motivation],
    reviews: TrainingReviews | None = None,
) -> list[EntityRequest]:
    """One request per user, from the user's training items and training reviews.

    Users with no training interaction still get a request (an empty history is stated
    plainly), so no user is ever dropped without a trace.
    """
    users = dataset.columns("users", ("user", "user_id"))
    items = dataset.columns("items", ("item", "title"))
    reviews = reviews or TrainingReviews(dataset, options.review_chars)
    titles = {
        int(i): neutralise(t, 300) or "(no title)"
        for i, t in zip(items["item"], items["title"], strict=True)
    }
    item_parts: dict[int, str] = {}  # each item's title and motivations, rendered once
    train = dataset.columns("interactions", ("user", "item"), split="train")
    history: dict[int, list[int]] = {}
    for user, item in zip(train["user"], train["item"], strict=True):
        history.setdefault(user, []).append(item)
    system = prompts.render("system")
    template_hash = prompts.step_hash("user")
    requests = []
    by_pair = reviews.by_pair
    for user, user_id in zip(users["user"], users["user_id"], strict=True):
        user = int(user)
        # Reviewed items first (they carry the user's own words), then a stable hash order.
        order = _order_after(user_id)
        seen = sorted(
            history.get(user, []),
            key=lambda i: ((user, i) not in by_pair, order(i)),
        )
        blocks = []
        for n, item in enumerate(seen[: options.user_items], start=1):
            part = item_parts.get(item)
            if part is None:
                motivation = _motivation_text(item_motivations.get(item))
                part = item_parts[item] = f"Item: {titles[item]}\n{motivation}"
            row = by_pair.get((user, item))
            if row is not None:
                part = f"{part}\nUser's review: {reviews.body(row)}"
            blocks.append(fenced("ITEM", n, part))
        prompt = prompts.render(
            "user",
            items="\n".join(blocks) if blocks else "(no training interactions)",
            item_count=len(blocks),
        )
        requests.append(
            EntityRequest(
                "user", user, str(user_id), (("system", system), ("user", prompt)), template_hash
            )
        )
    return requests
