"""Yelp Open Dataset: ``yelp_academic_dataset_review.json`` and ``..._business.json``.

Reviews: user_id, business_id, stars, text, date ("YYYY-MM-DD HH:MM:SS"). Businesses: name,
categories (one comma-separated string), attributes (a dict whose values are strings, some of
them Python literals themselves: ``"{'garage': False, 'lot': True}"``, ``"u'free'"``), city.
The paper keeps Yelp ratings >= 2, the default rating filter here.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmmrec_cli.data.badlines import BadLines
from lmmrec_cli.data.formats import RawFormat, RawSource, ReadOptions
from lmmrec_cli.data.formats.columnar import ISO, JsonReviewColumns, read_review_batches
from lmmrec_cli.data.formats.common import (
    JSON,
    BadValue,
    clean_text,
    first_line_record,
    id_field,
    labelled,
    missing,
    rating_value,
    raw_text,
    records,
    timestamp_value,
)
from lmmrec_cli.data.records import ItemText, Review

if TYPE_CHECKING:
    import pyarrow as pa

REVIEW_FILE = "yelp_academic_dataset_review.json"
BUSINESS_FILE = "yelp_academic_dataset_business.json"

_WORD_BREAK = re.compile(r"(?<=[a-z])(?=[A-Z0-9])")
# Attribute keys whose split form would read badly.
_ATTRIBUTE_NAMES = {"RestaurantsPriceRange2": "price range (1-4)", "WiFi": "wifi"}


def _find(directory: Path, exact: str, word: str) -> Path | None:
    for candidate in (directory / exact, directory / f"{exact}.gz"):
        if candidate.is_file():
            return candidate
    matches = sorted(p for p in directory.glob(f"*{word}*.json*") if p.is_file())
    return matches[0] if matches else None


def _attribute_value(raw: Any) -> str:
    """``"True"`` → yes, ``"u'free'"`` → free, ``"{'garage': False, 'lot': True}"`` → lot."""
    value = raw
    if isinstance(raw, str):
        text = raw.strip()
        if text in ("None", ""):
            return ""
        if text[:1] in "{[\"'" or text[:2] in ("u'", 'u"'):
            try:
                value = ast.literal_eval(text)
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                value = text
        elif text in ("True", "False"):
            value = text == "True"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        chosen = [
            _words(k) for k, v in value.items() if v is True or (isinstance(v, str) and v == "True")
        ]
        return ", ".join(chosen) if chosen else "none"
    if value is None:
        return ""
    return clean_text(str(value).replace("_", " "))


def _words(key: str) -> str:
    return _WORD_BREAK.sub(" ", str(key)).replace("_", " ").lower()


def attributes_text(attributes: Any) -> str:
    """A business's attributes as "wi fi: free; outdoor seating: yes; business parking: lot"."""
    if not isinstance(attributes, dict):
        return ""
    parts = []
    for key, raw in attributes.items():
        value = _attribute_value(raw)
        if value:
            parts.append(f"{_ATTRIBUTE_NAMES.get(key) or _words(key)}: {value}")
    return "; ".join(parts)


class Yelp(RawFormat):
    name = "yelp"
    description = "Yelp Open Dataset (review + business JSON lines)"
    default_min_rating = 2.0

    @classmethod
    def sniff(cls, path: Path, first_lines: list[str]) -> bool:
        record = first_line_record(first_lines, JSON)
        return record is not None and all(
            k in record for k in ("user_id", "business_id", "stars", "text")
        )

    @classmethod
    def sniff_meta(cls, path: Path, first_lines: list[str]) -> bool:
        record = first_line_record(first_lines, JSON)
        return (
            record is not None
            and "business_id" in record
            and "name" in record
            and "user_id" not in record
        )

    @classmethod
    def discover(cls, directory: Path) -> RawSource | None:
        reviews = _find(directory, REVIEW_FILE, "review")
        if reviews is None:
            return None
        business = _find(directory, BUSINESS_FILE, "business")
        return RawSource((reviews,), (business,) if business else ())

    def read_reviews(
        self, path: Path, options: ReadOptions, bad_lines: BadLines
    ) -> Iterator[Review]:
        for line, record in records(path, bad_lines, syntax=JSON, encoding=options.encoding):
            user = id_field(record, "user_id")
            item = id_field(record, "business_id")
            if user is None or item is None:
                missing(path, line, bad_lines, ["user_id"] if user is None else ["business_id"])
                continue
            try:
                rating = rating_value(record.get("stars"))
                timestamp = timestamp_value(record.get("date"))
            except BadValue as error:
                bad_lines.report(path, line, str(error))
                continue
            yield Review(
                user,
                item,
                rating,
                timestamp,
                raw_text(record.get("text")),
                "",
                line,
            )

    def review_batches(self, path: Path, options: ReadOptions, bad_lines: BadLines) -> Iterator[pa.Table]:
        columns = JsonReviewColumns("user_id", ("business_id",), "stars", "date", "text", None, time_kind=ISO)
        return read_review_batches(
            path, columns, lambda: self.read_reviews(path, options, bad_lines), encoding=options.encoding
        )

    def read_items(
        self, path: Path, options: ReadOptions, bad_lines: BadLines
    ) -> Iterator[ItemText]:
        for line, record in records(path, bad_lines, syntax=JSON, encoding=options.encoding):
            item = id_field(record, "business_id")
            if item is None:
                missing(path, line, bad_lines, ["business_id"])
                continue
            place = ", ".join(
                p for p in (clean_text(record.get("city")), clean_text(record.get("state"))) if p
            )
            text = labelled(
                [
                    ("Categories", record.get("categories") or ""),
                    ("Location", place),
                    ("Attributes", attributes_text(record.get("attributes"))),
                ]
            )
            yield ItemText(item, clean_text(record.get("name")), text, line)
