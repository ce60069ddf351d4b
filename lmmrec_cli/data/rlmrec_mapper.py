"""RLMRec id mappers: which raw user / item id each integer index of a released split stands for.

RLMRec ships one JSON-lines file per side (``data/mapper/<dataset>_user.json`` and
``<dataset>_item.json``), one object per line: ``{"uid": 0, "reviewerID": "A2PD..."}`` or
``{"iid": 0, "asin": "0373730489"}`` (Yelp: ``user_id`` / ``business_id``; Steam: ``username`` /
``product_id``). The index key (``uid`` / ``iid``) says the side; the one other key is the raw id,
whatever it is called.

``--mapper`` takes such files, or a directory holding them. In a directory with one pair, that
pair is used. With several (RLMRec's ``data/mapper/`` holds amazon, yelp and steam), the pair whose
id counts equal the split's matrix shape is used, whatever the split's folder is called; where more
than one pair has that shape, the one whose prefix is the split folder's name
(``amazon`` for ``.../amazon``) decides.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from lmmrec_cli.errors import InputError, UsageError

INDEX_KEYS = {"uid": "user", "iid": "item"}


@dataclass(frozen=True)
class IdMapper:
    """Raw ids of one side, ``ids[k]`` being the id of index ``k``."""

    side: str  # "user" | "item"
    path: Path
    id_field: str  # e.g. "reviewerID"
    ids: list[str]


def _records(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, line) of the non-blank lines; unreadable files are InputErrors."""
    number = 0
    try:
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    yield number, line
    except OSError as error:
        raise InputError(path, f"cannot read ({error.strerror or error})") from None
    except UnicodeDecodeError:
        raise InputError(path, "not UTF-8 text", line=number + 1) from None


def _side_of(path: Path) -> str:
    """The side of a mapper file, from the index key of its first record."""
    for number, line in _records(path):
        return _parse_line(path, number, line)[0]
    raise InputError(path, "the id-mapper file is empty")


def _parse_line(path: Path, number: int, line: str) -> tuple[str, int, str, str]:
    """(side, index, id field, raw id) of one mapper line."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise InputError(path, f"not JSON ({error.msg})", line=number) from None
    if not isinstance(record, dict):
        raise InputError(path, "expected a JSON object per line", line=number)
    index_keys = [key for key in record if key in INDEX_KEYS]
    others = [key for key in record if key not in INDEX_KEYS]
    if len(index_keys) != 1 or len(others) != 1:
        raise InputError(
            path,
            f'expected {{"uid" or "iid": N, "<raw id field>": ID}}, found keys {sorted(record)}',
            line=number,
        )
    index, raw = record[index_keys[0]], record[others[0]]
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise InputError(
            path, f"{index_keys[0]} must be a non-negative integer, found {index!r}", line=number
        )
    if isinstance(raw, bool) or not isinstance(raw, (str, int)) or str(raw) == "":
        raise InputError(
            path, f"{others[0]} must be a non-empty string, found {raw!r}", line=number
        )
    return INDEX_KEYS[index_keys[0]], index, others[0], str(raw)


def read_mapper(path: Path) -> IdMapper:
    """Read and check a mapper: indices 0..n-1 each exactly once, raw ids distinct."""
    by_index: dict[int, str] = {}
    seen: dict[str, int] = {}
    side = id_field = ""
    for number, line in _records(path):
        line_side, index, field, raw = _parse_line(path, number, line)
        if side and (line_side, field) != (side, id_field):
            raise InputError(
                path, f"mixes record kinds ({side}/{id_field} and {line_side}/{field})", line=number
            )
        side, id_field = line_side, field
        if index in by_index:
            raise InputError(path, f"index {index} appears twice", line=number)
        if raw in seen:
            # Two indices with one raw id would merge two users/items when ids are joined.
            raise InputError(
                path, f"{field} {raw!r} maps two indices ({seen[raw]} and {index})", line=number
            )
        by_index[index] = raw
        seen[raw] = index
    if not by_index:
        raise InputError(path, "the id-mapper file is empty")
    n = len(by_index)
    if max(by_index) != n - 1:
        missing = next(k for k in range(n) if k not in by_index)
        raise InputError(path, f"indices are not 0..{n - 1}: index {missing} is missing")
    return IdMapper(side, path, id_field, [by_index[k] for k in range(n)])


def _count_records(path: Path) -> int:
    return sum(1 for _ in _records(path))


def _pair_in_directory(
    directory: Path, prefix: str, shape: Callable[[], tuple[int, int]]
) -> list[Path]:
    users = {p.name[: -len("_user.json")]: p for p in directory.glob("*_user.json")}
    items = {p.name[: -len("_item.json")]: p for p in directory.glob("*_item.json")}
    found = sorted(set(users) | set(items))
    if not found:
        raise UsageError(
            f"--mapper {directory}: no *_user.json / *_item.json files in this directory"
        )
    if len(found) == 1:
        chosen = found[0]
    else:
        # Counting lines is cheap (RLMRec's mappers are under 1 MB); the shape is the split's.
        n_users, n_items = shape()
        sizes = {
            name: (
                _count_records(users[name]) if name in users else None,
                _count_records(items[name]) if name in items else None,
            )
            for name in found
        }
        fitting = [
            name
            for name, (u, i) in sizes.items()
            if u in (None, n_users) and i in (None, n_items) and (u, i) != (None, None)
        ]
        if len(fitting) == 1:
            chosen = fitting[0]
        elif prefix in fitting:
            chosen = prefix
        else:
            described = ", ".join(
                f"{name} ({'?' if u is None else f'{u:,}'} users × "
                f"{'?' if i is None else f'{i:,}'} items)"
                for name, (u, i) in sizes.items()
            )
            problem = (
                f"{len(fitting)} fit the split's {n_users:,} users × {n_items:,} items and none "
                f"is named {prefix!r}"
                if fitting
                else f"none has the split's {n_users:,} users × {n_items:,} items"
            )
            raise UsageError(
                f"--mapper {directory}: several mapper pairs ({described}); {problem}",
                hint=f"pass the files, e.g. --mapper {directory / (found[0] + '_user.json')} "
                f"--mapper {directory / (found[0] + '_item.json')}",
            )
    return [p for p in (users.get(chosen), items.get(chosen)) if p is not None]


def resolve_mappers(
    paths: list[Path], split_directory: Path, shape: Callable[[], tuple[int, int]]
) -> dict[str, Path]:
    """Side → mapper file, from ``--mapper`` files and/or directories; ``shape`` gives the
    split's (users, items), asked for only when a directory holds several pairs."""
    files: list[Path] = []
    for path in paths:
        path = Path(path).expanduser()
        if path.is_dir():
            files += _pair_in_directory(path, split_directory.resolve().name, shape)
        elif path.is_file():
            files.append(path)
        else:
            raise InputError(
                path,
                "file not found",
                hint="--mapper takes an id-mapper file or a directory of them",
            )
    chosen: dict[str, Path] = {}
    for path in files:
        side = _side_of(path)
        if side in chosen and chosen[side].resolve() != path.resolve():
            raise UsageError(f"two {side} id mappers given: {chosen[side]} and {path}")
        chosen[side] = path
    return chosen
