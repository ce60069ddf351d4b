"""The records every raw-format reader yields, whatever the source schema."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Review:
    """One user-item interaction as read from a raw file.

    ``line`` is the 1-based line (or record) number in the source, kept for error messages.
    ``rating`` is None where the source has no rating (Steam); ``timestamp`` is Unix seconds
    or None.
    """

    user_id: str
    item_id: str
    rating: float | None = None
    timestamp: int | None = None
    text: str = ""
    summary: str = ""
    line: int = 0


@dataclass(slots=True)
class ItemText:
    """What a metadata file says about one item. ``text`` joins description, categories,
    attributes, tags... into readable prose ("Categories: A, B. Description: ...")."""

    item_id: str
    title: str = ""
    text: str = ""
    line: int = 0
