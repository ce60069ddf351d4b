"""RecBole atomic files: ``NAME.inter`` (interactions) and ``NAME.item`` (item features).

Tab-separated, one header line of typed names such as ``user_id:token	item_id:token
rating:float	timestamp:float``; types are ``token``, ``token_seq`` (space-separated
tokens), ``float`` and ``float_seq``. RecBole does not quote fields, so a line is split on
tabs. The id, rating and time columns follow RecBole's default field names (``user_id``,
``item_id``, ``rating``, ``timestamp``) unless ``--col-*`` names others. An item's text is
made of its string fields (``token`` / ``token_seq``: categories, genres, brand...);
``.user`` files hold no text this tool uses and are not read.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from lmmrec_cli.data.badlines import BadLines
from lmmrec_cli.data.formats import RawFormat, RawSource, ReadOptions
from lmmrec_cli.data.formats.common import (
    BadValue,
    clean_text,
    labelled,
    rating_value,
    timestamp_value,
)
from lmmrec_cli.data.formats.tabular import (
    ITEM_NAMES,
    RATING_NAMES,
    SUMMARY_NAMES,
    TEXT_NAMES,
    TIME_NAMES,
    TITLE_NAMES,
    USER_NAMES,
    _pick,
)
from lmmrec_cli.data.records import ItemText, Review
from lmmrec_cli.data.textio import numbered_lines
from lmmrec_cli.errors import InputError

TYPES = ("token", "token_seq", "float", "float_seq")
_TYPED_NAME = re.compile(r"^[^\t:]+:(token|token_seq|float|float_seq)$")


@dataclass(frozen=True)
class Header:
    names: list[str]
    types: list[str]

    def index(self, name: str | None) -> int | None:
        return None if name is None else self.names.index(name)


def parse_header(line: str, path: Path) -> Header:
    names, types = [], []
    for field in line.split("\t"):
        name, _, kind = field.strip().rpartition(":")
        if kind not in TYPES or not name:
            raise InputError(
                path,
                f"header field {field!r} is not NAME:TYPE with TYPE one of {', '.join(TYPES)}",
                line=1,
                hint="RecBole atomic files start with a typed header such as user_id:token",
            )
        names.append(name)
        types.append(kind)
    return Header(names, types)


def _lines(
    path: Path, options: ReadOptions, bad_lines: BadLines
) -> tuple[Header, Iterator[tuple[int, list[str]]]]:
    lines = numbered_lines(path, bad_lines, encoding=options.encoding)
    first = next(lines, None)
    if first is None:
        raise InputError(path, "the file is empty", hint="check that the download finished")
    header = parse_header(first[1], path)
    width = len(header.names)

    def rows() -> Iterator[tuple[int, list[str]]]:
        for line, text in lines:
            fields = text.split("\t")
            if len(fields) != width:
                bad_lines.report(
                    path,
                    line,
                    f"{len(fields)} fields where the header has {width} (malformed or truncated line)",
                )
                continue
            yield line, fields

    return header, rows()


def _sniff_header(first_lines: list[str]) -> bool:
    if not first_lines:
        return False
    fields = first_lines[0].split("\t")
    return all(_TYPED_NAME.match(f.strip()) for f in fields)


class RecBole(RawFormat):
    name = "recbole"
    description = "RecBole atomic files (.inter + .item, typed TSV headers like user_id:token)"
    default_min_rating = None

    @classmethod
    def sniff(cls, path: Path, first_lines: list[str]) -> bool:
        return _sniff_header(first_lines) and not path.name.endswith(
            (".item", ".user", ".item.gz", ".user.gz")
        )

    @classmethod
    def sniff_meta(cls, path: Path, first_lines: list[str]) -> bool:
        return _sniff_header(first_lines) and path.name.endswith((".item", ".item.gz"))

    @classmethod
    def discover(cls, directory: Path) -> RawSource | None:
        inters = sorted(
            p
            for p in directory.iterdir()
            if p.is_file() and p.name.endswith((".inter", ".inter.gz"))
        )
        if not inters:
            return None
        # RecBole's own layout: dataset/NAME/NAME.inter; prefer the file named after the folder.
        named = [p for p in inters if p.name.split(".")[0] == directory.name]
        inter = (named or inters)[0]
        stem = inter.name.split(".")[0]
        items = [
            p for p in (directory / f"{stem}.item", directory / f"{stem}.item.gz") if p.is_file()
        ]
        return RawSource((inter,), tuple(items[:1]))

    def read_reviews(
        self, path: Path, options: ReadOptions, bad_lines: BadLines
    ) -> Iterator[Review]:
        header, rows = _lines(path, options, bad_lines)
        names = header.names
        user = header.index(_pick(names, options.col_user, USER_NAMES, "--col-user", path, True))
        item = header.index(_pick(names, options.col_item, ITEM_NAMES, "--col-item", path, True))
        rating = header.index(
            _pick(names, options.col_rating, RATING_NAMES, "--col-rating", path, False)
        )
        stamp = header.index(
            _pick(names, options.col_timestamp, TIME_NAMES, "--col-timestamp", path, False)
        )
        text = header.index(_pick(names, options.col_text, TEXT_NAMES, "--col-text", path, False))
        summary = header.index(
            _pick(names, options.col_summary, SUMMARY_NAMES, "--col-summary", path, False)
        )
        for line, fields in rows:
            user_id, item_id = fields[user].strip(), fields[item].strip()  # type: ignore[index]
            if not user_id or not item_id:
                bad_lines.report(
                    path, line, f"empty {names[user] if not user_id else names[item]!r}"
                )  # type: ignore[index]
                continue
            try:
                value = rating_value(fields[rating]) if rating is not None else None
                when = timestamp_value(fields[stamp]) if stamp is not None else None
            except BadValue as error:
                bad_lines.report(path, line, str(error))
                continue
            yield Review(
                user_id,
                item_id,
                value,
                when,
                fields[text] if text is not None else "",
                fields[summary] if summary is not None else "",
                line,
            )

    def read_items(
        self, path: Path, options: ReadOptions, bad_lines: BadLines
    ) -> Iterator[ItemText]:
        header, rows = _lines(path, options, bad_lines)
        names = header.names
        item = header.index(_pick(names, options.col_item, ITEM_NAMES, "--col-item", path, True))
        title_name = _pick(names, options.col_title, TITLE_NAMES, "--col-title", path, False)
        title = header.index(title_name)
        text_name = options.col_item_text
        if text_name is not None:
            text_columns = [
                header.index(_pick(names, text_name, (), "--col-item-text", path, True))
            ]
        else:
            text_columns = [
                k
                for k, (name, kind) in enumerate(zip(names, header.types, strict=False))
                if kind in ("token", "token_seq") and k not in (item, title)
            ]
        labels = [names[k].replace("_", " ").capitalize() for k in text_columns]  # type: ignore[index]
        for line, fields in rows:
            item_id = fields[item].strip()  # type: ignore[index]
            if not item_id:
                bad_lines.report(path, line, f"empty {names[item]!r}")  # type: ignore[index]
                continue
            text = labelled((label, fields[k]) for label, k in zip(labels, text_columns, strict=False))  # type: ignore[index]
            yield ItemText(
                item_id, clean_text(fields[title]) if title is not None else "", text, line
            )
