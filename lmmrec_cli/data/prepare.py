"""``lmmrec prepare``: raw files (or the built-in demo) → a dataset version in the workspace."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmmrec_cli.console import SILENT, Progress
from lmmrec_cli.data.badlines import BadLines
from lmmrec_cli.data.demo import generate_demo
from lmmrec_cli.data.formats import RawFormat, RawSource, ReadOptions, detect_source
from lmmrec_cli.data.pipeline import PrepareReport, PrepareSettings, run_pipeline
from lmmrec_cli.data.records import ItemText
from lmmrec_cli.data.rlmrec import FORMAT_NAME as RLMREC
from lmmrec_cli.data.rlmrec import import_rlmrec
from lmmrec_cli.data.rlmrec_source import is_rlmrec_directory
from lmmrec_cli.data.rlmrec_text import find_text_sources
from lmmrec_cli.data.textio import report_bytes_read
from lmmrec_cli.errors import UsageError
from lmmrec_cli.workspace import MAX_NAME_LENGTH, ArtifactRef, Workspace

if TYPE_CHECKING:
    import pyarrow as pa

DEMO_NAME = "demo"


@dataclass(frozen=True)
class DemoSpec:
    users: int = 600
    items: int = 400
    seed: int = 7


@dataclass
class PrepareResult:
    ref: ArtifactRef
    reused: bool
    counts: dict[str, Any]
    format_name: str
    settings: PrepareSettings
    derived: list[ArtifactRef] = field(default_factory=list)  # e.g. imported motivations


def default_name(paths: list[Path]) -> str:
    """A dataset name from the first input's file name: ``All_Beauty_5.json.gz`` → ``All_Beauty_5``."""
    stem = paths[0].name
    for suffix in (".gz", ".json", ".jsonl", ".csv", ".tsv", ".parquet", ".inter", ".txt"):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
    stem = re.sub(r"[^A-Za-z0-9_.\-]+", "_", stem)[:MAX_NAME_LENGTH].strip("._-") or "dataset"
    return stem


def _stream_reviews(
    fmt: RawFormat, source: RawSource, options: ReadOptions, bad: BadLines, progress: Progress = SILENT
) -> Iterator[pa.Table]:
    # The bar opens on the first record and closes when the stream ends, before the pipeline's
    # next stage opens its own (rich shows one live bar at a time).
    total = sum(path.stat().st_size for path in source.reviews)
    with progress.task("reading", total=total, unit="bytes") as task, report_bytes_read(task.advance):
        for path in source.reviews:
            yield from fmt.review_batches(path, options, bad)


def _stream_items(fmt: RawFormat, source: RawSource, options: ReadOptions, bad: BadLines) -> Iterator[ItemText]:
    for path in source.meta:
        yield from fmt.read_items(path, options, bad)


def prepare(
    workspace: Workspace,
    *,
    paths: list[Path],
    meta: list[Path],
    format_name: str | None,
    name: str | None,
    settings: PrepareSettings,
    min_rating_given: bool,
    options: ReadOptions = ReadOptions(),
    on_bad_line: str = "skip",
    demo: DemoSpec | None = None,
    progress: Progress = SILENT,
    mappers: list[Path] | None = None,
    reviews: list[Path] | None = None,
) -> PrepareResult:
    """Build (or find) the dataset version for these inputs and settings.

    ``min_rating_given`` says whether ``settings.min_rating`` came from the user; if not, the
    format's default rating filter (the paper's) replaces it. ``mappers`` and ``reviews``
    are for RLMRec splits: id mappers, and raw dumps whose review texts are joined onto the split.
    """
    one_dir = len(paths) == 1 and is_rlmrec_directory(Path(paths[0]).expanduser())
    if format_name == RLMREC or (format_name is None and demo is None and one_dir):
        return _prepare_rlmrec(
            workspace, paths, meta, name, settings, min_rating_given, options, mappers or [],
            reviews or [], on_bad_line, progress,
        )
    if mappers:
        raise UsageError("--mapper is for RLMRec splits only", hint="use --format rlmrec DIR")
    if reviews:
        raise UsageError(
            "--reviews joins review texts onto an RLMRec split",
            hint="for raw data give the review files as SOURCES; for a split use --format rlmrec DIR",
        )
    bad = BadLines(on_bad_line)
    if demo is not None:
        if paths or meta:
            raise UsageError("the demo data set is generated; do not pass input files with --dataset demo")
        fmt_name = "demo"
        build = workspace.build(
            "datasets",
            name or DEMO_NAME,
            key={"source": "demo", "demo": asdict(demo), "settings": settings.as_dict()},
        )
        with build:
            if build.reused:
                return PrepareResult(build.ref, True, build.ref.manifest()["counts"], fmt_name, settings)
            world = generate_demo(demo.users, demo.items, demo.seed)
            report = run_pipeline(
                world.reviews, world.items, settings, build.dir, progress=progress, source_label="demo"
            )
            build.counts.update(_counts(report, bad))
            build.extra["source"] = {"format": "demo", "synthetic": True, **asdict(demo)}
        return PrepareResult(build.ref, False, build.counts, fmt_name, settings)

    if not paths:
        raise UsageError("nothing to prepare", hint="give a raw file or directory, or --dataset demo")
    fmt_class, source = detect_source(paths, meta, format_name)
    if not min_rating_given:
        settings = PrepareSettings(**{**asdict(settings), "min_rating": fmt_class.default_min_rating})
    inputs = [workspace.fingerprint(p, "reviews") for p in source.reviews]
    inputs += [workspace.fingerprint(p, "meta") for p in source.meta]
    build = workspace.build(
        "datasets",
        name or default_name(list(source.reviews)),
        key={"format": fmt_class.name, "settings": settings.as_dict(), "read_options": asdict(options)},
        settings={"format": fmt_class.name, **settings.as_dict(), "read_options": asdict(options)},
        inputs=inputs,
    )
    with build:
        if build.reused:
            return PrepareResult(build.ref, True, build.ref.manifest()["counts"], fmt_class.name, settings)
        fmt = fmt_class()
        report = run_pipeline(
            _stream_reviews(fmt, source, options, bad, progress),
            _stream_items(fmt, source, options, bad) if source.meta else None,
            settings,
            build.dir,
            progress=progress,
            source_label=", ".join(str(p) for p in source.reviews),
        )
        build.counts.update(_counts(report, bad))
        build.extra["source"] = {"format": fmt_class.name, "description": fmt_class.description}
    return PrepareResult(build.ref, False, build.counts, fmt_class.name, settings)


def _counts(report: PrepareReport, bad: BadLines) -> dict[str, Any]:
    return {**report.as_dict(), "bad_lines": bad.as_dict()}


def _prepare_rlmrec(
    workspace: Workspace,
    paths: list[Path],
    meta: list[Path],
    name: str | None,
    settings: PrepareSettings,
    min_rating_given: bool,
    options: ReadOptions,
    mappers: list[Path],
    reviews: list[Path],
    on_bad_line: str,
    progress: Progress,
) -> PrepareResult:
    # The release is imported as is; a filter or split option would silently do nothing.
    if min_rating_given or settings != PrepareSettings() or options != ReadOptions():
        raise UsageError(
            "--format rlmrec keeps the released split exactly; "
            "filtering, splitting and table options do not apply",
            hint="drop them (--reviews and --meta add text without changing the split)",
        )
    if len(paths) != 1:
        raise UsageError("--format rlmrec takes one directory (with trn_mat.pkl and the others)")
    directory = Path(paths[0]).expanduser()
    name = name or default_name([directory])
    done = import_rlmrec(
        workspace,
        directory,
        name=name,
        mapper_paths=mappers,
        text=find_text_sources(reviews, meta),
        bad_lines=BadLines(on_bad_line),
        progress=progress,
    )
    derived = [ref for ref in (done.motivations, done.embeddings) if ref is not None]
    return PrepareResult(done.dataset, done.reused, done.counts, RLMREC, settings, derived)
