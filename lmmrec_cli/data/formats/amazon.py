"""Amazon review data (McAuley lab): the 2014, 2018 and 2023 releases, reviews and metadata.

Reviews
    2014 ``reviews_*.json``: reviewerID, asin, overall, reviewText, summary, unixReviewTime,
    helpful; 2018 ``*_5.json`` / ``<Category>.json``: the same keys plus verified, vote, style,
    image; 2023 ``<Category>.jsonl``: user_id, parent_asin (the item; ``asin`` is a variant),
    rating, text, title, timestamp in milliseconds.
Metadata (``--meta``)
    2014 ``meta_*.json``: Python literals (title, description, categories as nested lists,
    brand, salesRank); 2018: JSON (title, possibly a raw HTML fragment; description and
    category lists; brand; feature; details) with repeated asins; 2023: parent_asin, title,
    description, categories, features, details, store. One reader takes all three, since the
    release of a metadata file says nothing the keys do not.

The paper keeps Amazon ratings >= 3, the default rating filter here.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from lmmrec_cli.data.badlines import BadLines
from lmmrec_cli.data.formats import RawFormat, ReadOptions
from lmmrec_cli.data.formats.columnar import JsonReviewColumns, read_review_batches
from lmmrec_cli.data.formats.common import (
    JSON_OR_LITERAL,
    BadValue,
    clean_text,
    id_field,
    labelled,
    missing,
    parse_record,
    rating_value,
    raw_text,
    records,
    timestamp_value,
)
from lmmrec_cli.data.records import ItemText, Review

if TYPE_CHECKING:
    import pyarrow as pa

# Detail keys that are identifiers or logistics, not a description of the item.
_NOISE_DETAILS = (
    "asin",
    "isbn",
    "upc",
    "date first available",
    "shipping",
    "weight",
    "dimensions",
    "rank",
    "model number",
    "discontinued",
)


def _first_records(first_lines: list[str]) -> list[dict]:
    """The first parseable record, if any, as a list (a bad line among the first few must not
    change the detected format, so one record decides)."""
    for line in first_lines:
        record = parse_record(line, JSON_OR_LITERAL)
        if record is not None:
            return [record]
    return []


def _is_meta(record: dict) -> bool:
    if "reviewerID" in record or "user_id" in record:
        return False
    if "asin" in record:
        return any(
            k in record
            for k in (
                "title",
                "description",
                "categories",
                "category",
                "brand",
                "related",
                "salesRank",
                "also_buy",
            )
        )
    return "parent_asin" in record and any(
        k in record for k in ("title", "main_category", "features", "store")
    )


class _AmazonReviews(RawFormat):
    """Shared reader; subclasses name the keys of their release."""

    default_min_rating: ClassVar[float | None] = 3.0
    user_key: ClassVar[str] = "reviewerID"
    item_keys: ClassVar[tuple[str, ...]] = ("asin",)
    rating_key: ClassVar[str] = "overall"
    text_key: ClassVar[str] = "reviewText"
    summary_key: ClassVar[str] = "summary"
    time_key: ClassVar[str] = "unixReviewTime"

    @classmethod
    def sniff_meta(cls, path: Path, first_lines: list[str]) -> bool:
        found = _first_records(first_lines)
        return bool(found) and all(_is_meta(r) for r in found)

    def read_reviews(
        self, path: Path, options: ReadOptions, bad_lines: BadLines
    ) -> Iterator[Review]:
        user_key, item_keys = self.user_key, self.item_keys
        rating_key, time_key = self.rating_key, self.time_key
        text_key, summary_key = self.text_key, self.summary_key
        for line, record in records(
            path, bad_lines, syntax=JSON_OR_LITERAL, encoding=options.encoding
        ):
            user = id_field(record, user_key)
            item = None
            for key in item_keys:
                item = id_field(record, key)
                if item is not None:
                    break
            if user is None or item is None:
                missing(path, line, bad_lines, [user_key] if user is None else item_keys)
                continue
            try:
                rating = rating_value(record.get(rating_key))
                timestamp = timestamp_value(record.get(time_key))
            except BadValue as error:
                bad_lines.report(path, line, str(error))
                continue
            yield Review(
                user,
                item,
                rating,
                timestamp,
                raw_text(record.get(text_key)),
                raw_text(record.get(summary_key)),
                line,
            )

    def review_batches(self, path: Path, options: ReadOptions, bad_lines: BadLines) -> Iterator[pa.Table]:
        columns = JsonReviewColumns(
            self.user_key, self.item_keys, self.rating_key, self.time_key, self.text_key, self.summary_key
        )
        return read_review_batches(
            path, columns, lambda: self.read_reviews(path, options, bad_lines), encoding=options.encoding
        )

    def read_items(
        self, path: Path, options: ReadOptions, bad_lines: BadLines
    ) -> Iterator[ItemText]:
        return read_amazon_items(path, options, bad_lines)


class Amazon2023(_AmazonReviews):
    name = "amazon2023"
    description = "Amazon Reviews 2023 (user_id, parent_asin, rating, text, title; timestamp in ms)"
    user_key = "user_id"
    item_keys = ("parent_asin", "asin")
    rating_key = "rating"
    text_key = "text"
    summary_key = "title"
    time_key = "timestamp"

    @classmethod
    def sniff(cls, path: Path, first_lines: list[str]) -> bool:
        found = _first_records(first_lines)
        return bool(found) and all(
            "user_id" in r and ("parent_asin" in r or "asin" in r) and "rating" in r for r in found
        )


class Amazon2018(_AmazonReviews):
    name = "amazon2018"
    description = "Amazon Review Data 2018 (reviewerID, asin, overall, reviewText, summary, verified, vote, style)"

    @classmethod
    def sniff(cls, path: Path, first_lines: list[str]) -> bool:
        found = _first_records(first_lines)
        return (
            bool(found)
            and all("reviewerID" in r and "asin" in r for r in found)
            # Only the 2018 release has these keys; 2014 has "helpful" instead.
            and any(k in r for r in found for k in ("verified", "vote", "style", "image"))
        )


class Amazon2014(_AmazonReviews):
    name = "amazon2014"
    description = (
        "Amazon product data 2014 (reviewerID, asin, overall, reviewText, summary, helpful)"
    )

    @classmethod
    def sniff(cls, path: Path, first_lines: list[str]) -> bool:
        found = _first_records(first_lines)
        return bool(found) and all("reviewerID" in r and "asin" in r for r in found)


def _details(value: Any) -> list[str]:
    if not isinstance(value, dict):
        return []
    out = []
    for key, detail in value.items():
        label = clean_text(key).rstrip(": ").strip()
        if not label or any(noise in label.lower() for noise in _NOISE_DETAILS):
            continue
        text = clean_text(detail) if not isinstance(detail, dict) else ""
        if text:
            out.append(f"{label} {text}")
    return out


def amazon_item_text(record: dict) -> ItemText | None:
    """Title and readable text of one metadata record of any release (None without an id)."""
    item = id_field(record, "parent_asin") or id_field(record, "asin")
    if item is None:
        return None
    categories = record.get("categories", record.get("category"))
    text = labelled(
        [
            ("Brand", record.get("brand") or record.get("store")),
            ("Categories", categories),
            ("Features", record.get("features", record.get("feature"))),
            ("Description", clean_text(record.get("description"))),
            ("Details", _details(record.get("details"))),
        ]
    )
    return ItemText(item, clean_text(record.get("title")), text)


def read_amazon_items(path: Path, options: ReadOptions, bad_lines: BadLines) -> Iterator[ItemText]:
    for line, record in records(path, bad_lines, syntax=JSON_OR_LITERAL, encoding=options.encoding):
        item = amazon_item_text(record)
        if item is None:
            missing(path, line, bad_lines, ["asin", "parent_asin"])
            continue
        item.line = line
        yield item
