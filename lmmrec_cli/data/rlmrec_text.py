"""Review text and item metadata from raw dumps, joined onto a released RLMRec split.

RLMRec's release holds interactions only; its id mappers say which raw id each index stands for
(Amazon 2014 Books ``reviewerID`` / ``asin``, Yelp ``user_id`` / ``business_id``, Steam v2
``username`` / ``product_id``). This module streams the raw dumps with the formats' own record
readers, keeps only the records whose user *and* item are in the split, and gives each
interaction of the split its review, tagged with that interaction's split:

- the split itself is never changed: a raw record of a pair the split does not hold is ignored
  (counted), a pair of the split without a raw review keeps its interaction without text (counted);
- a pair reviewed twice keeps its first record (as ``prepare`` does for raw data; counted);
- metadata gives items their title and text; the first record of an item wins (counted).

Memory is bounded by the split, not the dump: the id sets are the mapper's (tens of thousands of
ids), and only the matched reviews are held.

The coverage report says how much of the split found text; a low share almost always means a
dump of another data set or another data set's mapper, so it comes with a warning.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from lmmrec_cli.console import SILENT, Progress
from lmmrec_cli.data.badlines import BadLines
from lmmrec_cli.data.dataset import REVIEWS_SCHEMA, SPLITS
from lmmrec_cli.data.formats import RawFormat, ReadOptions, all_formats, detect_source
from lmmrec_cli.data.rlmrec_source import RlmrecData
from lmmrec_cli.data.textio import peek_lines, report_bytes_read
from lmmrec_cli.errors import InputError, UsageError

# Bump when the join writes different content from the same files (changes every version).
JOIN_VERSION = 1
# Below this share of training interactions with a review (or of items with metadata) the
# dump or the mapper is almost surely another data set's: the right pair gives close to 100%.
LOW_COVERAGE = 0.5
# What each of RLMRec's data sets was drawn from, for the warning.
EXPECTED_DUMPS = (
    "amazon-book: Amazon 2014 reviews_Books.json.gz + meta_Books.json.gz with amazon_*.json; "
    "yelp: the Yelp Open Dataset directory with yelp_*.json; "
    "steam: steam_reviews.json.gz + steam_games.json.gz with steam_*.json"
)


@dataclass(frozen=True)
class TextSources:
    """The raw files to join, each with the format that reads it."""

    reviews: tuple[tuple[type[RawFormat], Path], ...]
    meta: tuple[tuple[type[RawFormat], Path], ...]

    def __bool__(self) -> bool:
        return bool(self.reviews or self.meta)

    def files(self) -> dict[str, list[Path]]:
        return {"reviews": [p for _, p in self.reviews], "meta": [p for _, p in self.meta]}


def _meta_format(path: Path, preferred: list[type[RawFormat]]) -> type[RawFormat]:
    """The metadata's format; the reviews' own first (the Amazon releases share one reader, so
    the first match of all formats would name the wrong release)."""
    first_lines = peek_lines(path)
    for fmt in [*preferred, *all_formats()]:
        if fmt.sniff_meta(path, first_lines):
            return fmt
    raise InputError(
        path,
        "not item metadata of a known format",
        line=1,
        hint="--meta takes Amazon meta_*.json(.gz), Yelp's business file or steam_games.json(.gz)",
    )


def find_text_sources(reviews: list[Path], meta: list[Path]) -> TextSources:
    """Detect each file's format (a Yelp directory brings its business file as metadata)."""
    found_reviews: list[tuple[type[RawFormat], Path]] = []
    found_meta: list[tuple[type[RawFormat], Path]] = []
    for path in reviews:
        fmt, source = detect_source([path], [], None)
        found_reviews += [(fmt, p) for p in source.reviews]
        if not meta:
            found_meta += [(fmt, p) for p in source.meta]
    for path in meta:
        path = Path(path).expanduser()
        if not path.is_file():
            raise InputError(path, "file not found", hint="check the path")
        found_meta.append((_meta_format(path, [fmt for fmt, _ in found_reviews]), path))
    return TextSources(tuple(found_reviews), tuple(found_meta))


@dataclass
class JoinedText:
    """What the dumps add to the split: item texts by index and the reviews table."""

    titles: list[str]
    texts: list[str]
    reviews: pa.Table
    counts: dict[str, Any]


def _index(ids: list[str]) -> dict[str, int]:
    return {raw: index for index, raw in enumerate(ids)}


def _described(files: tuple[tuple[type[RawFormat], Path], ...]) -> dict[str, list[str]]:
    return {"files": [str(p) for _, p in files], "formats": sorted({f.name for f, _ in files})}


def _share(part: int, whole: int) -> dict[str, Any]:
    return {"with_text": part, "total": whole, "share": part / whole if whole else 0.0}


def join_text(
    data: RlmrecData, sources: TextSources, bad: BadLines, progress: Progress = SILENT
) -> JoinedText:
    if sources.reviews and set(data.mappers) != {"user", "item"}:
        raise UsageError(
            "--reviews joins the dump's raw user and item ids to the split: give both id mappers",
            hint="--mapper DIR with RLMRec's <dataset>_user.json and <dataset>_item.json",
        )
    if sources.meta and "item" not in data.mappers:
        raise UsageError(
            "--meta joins the dump's raw item ids to the split: give the item id mapper",
            hint="--mapper DIR with RLMRec's <dataset>_item.json",
        )
    n_items = data.n_items
    # (user, item) key of each interaction → its split code.
    split_of: dict[int, int] = {}
    for code, name in enumerate(SPLITS):
        matrix = data.splits[name]
        split_of.update(dict.fromkeys((matrix.users * n_items + matrix.items).tolist(), code))
    counts: dict[str, Any] = {"join_version": JOIN_VERSION}
    found: dict[int, tuple[float | None, str, str]] = {}
    if sources.reviews:
        counts["reviews"] = _read_reviews(data, sources, split_of, found, bad, progress)
    titles, texts = [""] * n_items, [""] * n_items
    if sources.meta:
        counts["meta"] = _read_meta(data, sources, titles, texts, bad)

    keys = np.array(sorted(k for k, (_, summary, text) in found.items() if text or summary))
    keys = keys.astype(np.int64)
    users, items = keys // n_items, keys % n_items
    codes = np.array([split_of[k] for k in keys.tolist()], dtype=np.int8)
    rows = [found[k] for k in keys.tolist()]
    reviews = pa.table(
        {
            "user": pa.array(users.astype(np.int32)),
            "item": pa.array(items.astype(np.int32)),
            "split": pa.array(np.asarray(SPLITS, dtype=object)[codes], type=pa.string()),
            "rating": pa.array([r[0] for r in rows], type=pa.float32()),
            "summary": pa.array([r[1] for r in rows], type=pa.string()),
            "text": pa.array([r[2] for r in rows], type=pa.string()),
        },
        schema=REVIEWS_SCHEMA,
    )
    counts["coverage"] = _coverage(data, users, items, codes, titles, texts, sources)
    counts["warnings"] = _warnings(counts, sources)
    counts["bad_lines"] = bad.as_dict()
    return JoinedText(titles, texts, reviews, counts)


def _read_reviews(
    data: RlmrecData,
    sources: TextSources,
    split_of: dict[int, int],
    found: dict[int, tuple[float | None, str, str]],
    bad: BadLines,
    progress: Progress,
) -> dict[str, Any]:
    users, items = _index(data.user_ids), _index(data.item_ids)
    n_items = data.n_items
    read = user_outside = item_outside = not_in_split = duplicates = 0
    options = ReadOptions()
    total = sum(path.stat().st_size for _, path in sources.reviews)
    with (
        progress.task("reading reviews", total=total, unit="bytes") as task,
        report_bytes_read(task.advance),
    ):
        for fmt, path in sources.reviews:
            for review in fmt().read_reviews(path, options, bad):
                read += 1
                user = users.get(review.user_id)
                item = items.get(review.item_id)
                if user is None or item is None:
                    user_outside += user is None
                    item_outside += item is None
                    continue
                key = user * n_items + item
                if key not in split_of:
                    not_in_split += 1
                elif key in found:
                    duplicates += 1
                else:
                    found[key] = (review.rating, review.summary or "", review.text or "")
    per_split = {name: 0 for name in SPLITS}
    empty = {name: 0 for name in SPLITS}
    for key, (_, summary, text) in found.items():
        name = SPLITS[split_of[key]]
        per_split[name] += 1
        if not (text or summary):
            empty[name] += 1
    sizes = {name: int(len(data.splits[name].users)) for name in SPLITS}
    return {
        **_described(sources.reviews),
        "records": read,
        # A record can name a user and an item that are both outside; each side is counted.
        "records_user_outside_split": user_outside,
        "records_item_outside_split": item_outside,
        "records_pair_not_in_split": not_in_split,
        "records_duplicate_pair": duplicates,
        "pairs_matched": dict(per_split),
        "pairs_matched_without_text": empty,
        "pairs_without_review": {name: sizes[name] - per_split[name] for name in SPLITS},
    }


def _read_meta(
    data: RlmrecData,
    sources: TextSources,
    titles: list[str],
    texts: list[str],
    bad: BadLines,
) -> dict[str, Any]:
    items = _index(data.item_ids)
    seen: set[int] = set()
    read = outside = duplicates = 0
    options = ReadOptions()
    for fmt, path in sources.meta:
        for record in fmt().read_items(path, options, bad):
            read += 1
            item = items.get(record.item_id)
            if item is None:
                outside += 1
            elif item in seen:
                duplicates += 1  # metadata dumps repeat some ids; the first record wins
            else:
                seen.add(item)
                titles[item], texts[item] = record.title, record.text
    return {
        **_described(sources.meta),
        "records": read,
        "records_item_outside_split": outside,
        "records_duplicate_item": duplicates,
        "items_matched": len(seen),
        "items_with_title": sum(1 for t in titles if t),
    }


def _coverage(
    data: RlmrecData,
    users: np.ndarray,
    items: np.ndarray,
    codes: np.ndarray,
    titles: list[str],
    texts: list[str],
    sources: TextSources,
) -> dict[str, Any]:
    """What a prompt can draw on: training reviews (never valid/test) and item metadata."""
    train = codes == 0
    n_train = int(len(data.splits["train"].users))
    items_with_meta = {k for k, (t, x) in enumerate(zip(titles, texts, strict=True)) if t or x}
    items_with_text = items_with_meta | set(np.unique(items[train]).tolist())
    coverage = {
        "users": _share(int(len(np.unique(users[train]))), data.n_users),
        "items": _share(len(items_with_text), data.n_items),
        "train_interactions": _share(int(train.sum()), n_train),
    }
    if sources.meta:
        coverage["items_with_metadata"] = _share(len(items_with_meta), data.n_items)
    return coverage


def _warnings(counts: dict[str, Any], sources: TextSources) -> list[str]:
    checks = []
    if sources.reviews:
        checks.append(
            ("reviews", "train_interactions", "the training interactions", "a review",
             "the dump is probably not the one this split was drawn from, or the mapper is "
             "another data set's")
        )
    if sources.meta:
        checks.append(
            ("meta", "items_with_metadata", "the items", "metadata",
             "the metadata is probably another data set's, or the item mapper is")
        )
    warnings = []
    for role, key, what, found, cause in checks:
        part = counts["coverage"][key]
        if part["share"] < LOW_COVERAGE:
            files = ", ".join(Path(p).name for p in counts[role]["files"])
            warnings.append(
                f"low coverage: only {part['share']:.1%} of {what} ({part['with_text']:,} of "
                f"{part['total']:,}) found {found} in {files}: {cause} ({EXPECTED_DUMPS})"
            )
    return warnings
