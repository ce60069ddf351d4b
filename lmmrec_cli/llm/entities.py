"""What each entity's prompt is built from: item text and TRAINING reviews only.

Validation and test reviews describe the answers the recommender will be scored on; reading
them here would leak the test set into the text view. Every review used below comes from
``PreparedDataset.reviews(split="train")`` and, for a user, only from the user's training
interactions.

Choices are deterministic (a hash order, not a random draw), so the same dataset and settings
give byte-identical prompts and therefore cache hits on a rerun.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

from lmmrec_cli.data.dataset import PreparedDataset
from lmmrec_cli.llm.ask import EntityRequest
from lmmrec_cli.llm.prompts import PromptSet, fenced, neutralise
from lmmrec_cli.motivations import Motivation


@dataclass(frozen=True)
class PromptOptions:
    item_reviews: int = 10  # training reviews shown per item
    user_items: int = 25  # training items shown per user (METHOD §1.2: ~20-30)
    review_chars: int = 500  # each review cut to this many characters
    description_chars: int = 1500

    def describe(self) -> dict[str, int]:
        return {
            "item_reviews": self.item_reviews,
            "user_items": self.user_items,
            "review_chars": self.review_chars,
            "description_chars": self.description_chars,
        }


def _order(*parts: object) -> str:
    return hashlib.sha256("\x1f".join(map(str, parts)).encode("utf-8")).hexdigest()


def _rating_text(rating: object) -> str:
    try:
        value = float(rating)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "unrated"
    return "unrated" if math.isnan(value) else f"{value:g}/5"


def _review_body(row: Mapping[str, object], limit: int) -> str:
    summary = neutralise(row.get("summary"), 120)  # type: ignore[arg-type]
    text = neutralise(row.get("text"), limit)  # type: ignore[arg-type]
    head = f"Rating: {_rating_text(row.get('rating'))}"
    if summary:
        head += f" | Title: {summary}"
    return f"{head}\n{text}" if text else head


def _pick_item_reviews(reviews: pd.DataFrame, item_id: str, cap: int) -> list[dict]:
    """Up to ``cap`` reviews, alternating liked and not-liked ones so the passive side is
    represented even when most reviews are positive."""
    rows = reviews.to_dict("records")
    rows.sort(key=lambda r: _order(item_id, r["user"]))
    liked = [r for r in rows if _is_liked(r.get("rating"))]
    others = [r for r in rows if not _is_liked(r.get("rating"))]
    picked: list[dict] = []
    while len(picked) < cap and (liked or others):
        for pool in (others, liked):
            if pool and len(picked) < cap:
                picked.append(pool.pop(0))
    return picked


def _is_liked(rating: object) -> bool:
    try:
        return float(rating) >= 4  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return True


def item_requests(
    dataset: PreparedDataset, prompts: PromptSet, options: PromptOptions
) -> list[EntityRequest]:
    items = dataset.items()
    reviews = dataset.reviews(split="train")
    by_item = {int(k): g for k, g in reviews.groupby("item", sort=False)} if len(reviews) else {}
    system = prompts.render("system")
    template_hash = prompts.step_hash("item")
    requests = []
    for row in items.itertuples(index=False):
        index = int(row.item)
        chosen = (
            _pick_item_reviews(by_item[index], row.item_id, options.item_reviews)
            if index in by_item
            else []
        )
        blocks = [
            fenced("REVIEW", n, _review_body(r, options.review_chars))
            for n, r in enumerate(chosen, start=1)
        ]
        prompt = prompts.render(
            "item",
            title=neutralise(row.title, 300) or "(no title)",
            description=neutralise(row.text, options.description_chars) or "(none)",
            reviews="\n".join(blocks) if blocks else "(no training reviews)",
            review_count=len(blocks),
        )
        requests.append(
            EntityRequest(
                "item",
                index,
                str(row.item_id),
                (("system", system), ("user", prompt)),
                template_hash,
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
) -> list[EntityRequest]:
    """One request per user, from the user's training items and training reviews.

    Users with no training interaction still get a request (an empty history is stated
    plainly), so no user is ever dropped without a trace.
    """
    users = dataset.users()
    items = dataset.items()
    titles = dict(zip(items["item"].astype(int), items["title"].fillna(""), strict=True))
    train_users, train_items = dataset.interactions.pairs("train")
    history: dict[int, list[int]] = {}
    for user, item in zip(train_users.tolist(), train_items.tolist(), strict=True):
        history.setdefault(user, []).append(item)
    reviews = dataset.reviews(split="train")
    own_review = {(int(r["user"]), int(r["item"])): r for r in reviews.to_dict("records")}
    system = prompts.render("system")
    template_hash = prompts.step_hash("user")
    requests = []
    for row in users.itertuples(index=False):
        user = int(row.user)
        seen = history.get(user, [])
        # Reviewed items first (they carry the user's own words), then a stable hash order.
        seen = sorted(seen, key=lambda i: ((user, i) not in own_review, _order(row.user_id, i)))
        chosen = seen[: options.user_items]
        blocks = []
        for n, item in enumerate(chosen, start=1):
            parts = [f"Item: {neutralise(titles.get(item), 300) or '(no title)'}"]
            parts.append(_motivation_text(item_motivations.get(item)))
            review = own_review.get((user, item))
            if review is not None:
                parts.append("User's review: " + _review_body(review, options.review_chars))
            blocks.append(fenced("ITEM", n, "\n".join(parts)))
        prompt = prompts.render(
            "user",
            items="\n".join(blocks) if blocks else "(no training interactions)",
            item_count=len(blocks),
        )
        requests.append(
            EntityRequest(
                "user",
                user,
                str(row.user_id),
                (("system", system), ("user", prompt)),
                template_hash,
            )
        )
    return requests
