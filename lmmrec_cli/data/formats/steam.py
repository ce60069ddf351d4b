"""Steam (Kang & McAuley, UCSD): reviews and game metadata, all Python-literal lines.

Reviews come in two shapes, told apart per record:

- ``australian_user_reviews.json``: one record per *user* (user_id, user_url) with a
  ``reviews`` list of {item_id, recommend, review, posted: "Posted November 5, 2011."};
- ``steam_reviews.json`` (version 2): one record per review (username, product_id, text,
  date "2017-12-17", hours, ...). Users are keyed by ``username``, as in RLMRec's Steam split.

Metadata: ``steam_games.json`` (id, app_name, title, genres, tags, specs, developer,
publisher). It has no description, so an item's text is its genres, tags, specs, developer
and publisher. Steam has no ratings; the paper keeps every interaction (no rating filter).
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from lmmrec_cli.data.badlines import BadLines
from lmmrec_cli.data.formats import RawFormat, ReadOptions
from lmmrec_cli.data.formats.common import (
    JSON_OR_LITERAL,
    BadValue,
    clean_text,
    first_line_record,
    id_field,
    labelled,
    missing,
    raw_text,
    records,
    timestamp_value,
)
from lmmrec_cli.data.records import ItemText, Review

_POSTED = re.compile(r"(?:Posted\s+)?([A-Z][a-z]+)\s+(\d{1,2}),\s*(\d{4})")
_APP_URL = re.compile(r"/app/(\d+)")


def posted_timestamp(posted: object) -> int | None:
    """ "Posted November 5, 2011." → Unix seconds (UTC); None when the year is missing
    ("Posted July 15." means the year of the crawl, which the data does not say)."""
    if not isinstance(posted, str):
        return None
    match = _POSTED.search(posted)
    if match is None:
        return None
    try:
        moment = datetime.strptime(" ".join(match.groups()), "%B %d %Y")
    except ValueError:
        return None
    return calendar.timegm(moment.timetuple())


def _is_user_record(record: dict) -> bool:
    return "user_id" in record and isinstance(record.get("reviews"), list)


def _is_v2_review(record: dict) -> bool:
    return "username" in record and "product_id" in record


class Steam(RawFormat):
    name = "steam"
    description = "Steam reviews (australian_user_reviews or steam_reviews v2; Python-literal lines) + steam_games"
    default_min_rating = None

    @classmethod
    def sniff(cls, path: Path, first_lines: list[str]) -> bool:
        record = first_line_record(first_lines)
        return record is not None and (_is_user_record(record) or _is_v2_review(record))

    @classmethod
    def sniff_meta(cls, path: Path, first_lines: list[str]) -> bool:
        record = first_line_record(first_lines)
        return (
            record is not None and "app_name" in record and ("tags" in record or "genres" in record)
        )

    def read_reviews(
        self, path: Path, options: ReadOptions, bad_lines: BadLines
    ) -> Iterator[Review]:
        for line, record in records(
            path, bad_lines, syntax=JSON_OR_LITERAL, encoding=options.encoding
        ):
            if _is_v2_review(record) or ("product_id" in record and "user_id" in record):
                user = id_field(record, "username") or id_field(record, "user_id")
                item = id_field(record, "product_id")
                if user is None or item is None:
                    missing(path, line, bad_lines, ["username"] if user is None else ["product_id"])
                    continue
                try:
                    timestamp = timestamp_value(record.get("date"))
                except BadValue as error:
                    bad_lines.report(path, line, str(error))
                    continue
                yield Review(
                    user,
                    item,
                    None,
                    timestamp,
                    raw_text(record.get("text")),
                    "",
                    line,
                )
            elif "reviews" in record:
                user = id_field(record, "user_id")
                reviews = record.get("reviews")
                if user is None or not isinstance(reviews, list):
                    missing(path, line, bad_lines, ["user_id"] if user is None else ["reviews"])
                    continue
                for review in reviews:
                    item = id_field(review, "item_id") if isinstance(review, dict) else None
                    if item is None:
                        missing(path, line, bad_lines, ["reviews[].item_id"])
                        continue
                    yield Review(
                        user,
                        item,
                        None,
                        posted_timestamp(review.get("posted")),
                        raw_text(review.get("review")),
                        "",
                        line,
                    )
            else:
                missing(path, line, bad_lines, ["username", "product_id"])

    def read_items(
        self, path: Path, options: ReadOptions, bad_lines: BadLines
    ) -> Iterator[ItemText]:
        for line, record in records(
            path, bad_lines, syntax=JSON_OR_LITERAL, encoding=options.encoding
        ):
            item = id_field(record, "id")
            if item is None:
                # One real record lacks "id" but its store URL holds the app id.
                match = _APP_URL.search(str(record.get("url") or ""))
                item = match.group(1) if match else None
            if item is None:
                missing(path, line, bad_lines, ["id"])
                continue
            title = clean_text(record.get("app_name")) or clean_text(record.get("title"))
            text = labelled(
                [
                    ("Genres", record.get("genres") or []),
                    ("Tags", record.get("tags") or []),
                    ("Features", record.get("specs") or []),
                    ("Developer", record.get("developer")),
                    ("Publisher", record.get("publisher")),
                ]
            )
            yield ItemText(item, title, text, line)
