"""Commands: ``prepare`` and ``status``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table
from rich.tree import Tree

from lmmrec_cli.cli.app import PANEL_DATA, PANEL_WORKSPACE, app
from lmmrec_cli.cli.options import JsonOption, QuietOption, WorkspaceOption, open_workspace
from lmmrec_cli.cli.rlmrec_summary import print_rlmrec_summary, print_text_warnings
from lmmrec_cli.console import Progress, print_json, stdout
from lmmrec_cli.data.dataset import SPLITS
from lmmrec_cli.data.formats import ReadOptions, all_formats
from lmmrec_cli.data.pipeline import PrepareSettings
from lmmrec_cli.data.prepare import DEMO_NAME, DemoSpec, PrepareResult, prepare
from lmmrec_cli.data.rlmrec import FORMAT_NAME as RLMREC
from lmmrec_cli.errors import LmmrecError, UsageError
from lmmrec_cli.workspace import ARTIFACT_KINDS, ArtifactRef, Workspace, check_name


def _parse_ratios(text: str) -> tuple[float, float, float]:
    parts = text.replace("/", ":").split(":")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != 3 or min(values) < 0 or sum(values) <= 0:
        raise UsageError(f"--ratios {text!r} is not three non-negative numbers like 3:1:1")
    total = sum(values)
    return (values[0] / total, values[1] / total, values[2] / total)


def _format_help() -> str:
    return ", ".join(f.name for f in all_formats()) or "none installed"


@app.command(rich_help_panel=PANEL_DATA)
def prepare_cmd(
    sources: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Raw review file(s), or a directory (Yelp, RecBole, RLMRec layouts). Gzip is read transparently.",
            show_default=False,
        ),
    ] = None,
    dataset: Annotated[
        str | None,
        typer.Option(
            "--dataset",
            "-d",
            help="Name of the dataset to create. `demo` with no SOURCES generates "
            "the built-in synthetic demo. [default: from the file name]",
            show_default=False,
        ),
    ] = None,
    format_name: Annotated[
        str | None,
        typer.Option(
            "--format",
            "-f",
            help=f"Input format, detected from the first lines if omitted: {_format_help()}, rlmrec.",
            show_default=False,
        ),
    ] = None,
    meta: Annotated[
        list[Path] | None,
        typer.Option(
            "--meta", help="Item metadata file (titles, descriptions, categories); repeatable.", show_default=False
        ),
    ] = None,
    mapper: Annotated[
        list[Path] | None,
        typer.Option(
            "--mapper",
            help="RLMRec splits: id-mapper JSON-lines file(s) (e.g. amazon_user.json, "
            "amazon_item.json), or a directory of them (the pair whose id counts match the "
            "split's shape is used); keeps the original user/item ids, which --reviews and "
            "--meta need. Without it the ids are the indices. Repeatable.",
            show_default=False,
        ),
    ] = None,
    reviews: Annotated[
        list[Path] | None,
        typer.Option(
            "--reviews",
            help="RLMRec splits: a raw review dump (Amazon, Yelp directory, Steam) whose texts are "
            "joined onto the split by the --mapper ids, each tagged with its interaction's split; "
            "the split itself is kept exactly. Repeatable; --meta adds item texts.",
            show_default=False,
        ),
    ] = None,
    min_rating: Annotated[
        float | None,
        typer.Option(
            "--min-rating",
            help="Drop interactions rated below this. Default: the paper's "
            "per-format filter (Amazon ≥ 3, Yelp ≥ 2, others none); 0 keeps all.",
            show_default=False,
        ),
    ] = None,
    min_user_interactions: Annotated[
        int, typer.Option("--min-user-interactions", help="k-core threshold for users.")
    ] = 5,
    min_item_interactions: Annotated[
        int, typer.Option("--min-item-interactions", help="k-core threshold for items.")
    ] = 5,
    sample_users: Annotated[
        int | None,
        typer.Option(
            "--sample-users",
            help="Keep a seeded random sample of this many users (then k-core again).",
            show_default=False,
        ),
    ] = None,
    split: Annotated[
        str,
        typer.Option(
            "--split",
            help="user: each user's interactions split by --ratios; temporal: oldest "
            "train, newest test; global: each interaction drawn independently.",
        ),
    ] = "user",
    ratios: Annotated[str, typer.Option("--ratios", help="train:valid:test shares.")] = "3:1:1",
    seed: Annotated[int, typer.Option("--seed", help="Seed for the split and the user sample.")] = 2024,
    on_bad_line: Annotated[
        str,
        typer.Option(
            "--on-bad-line", help="skip: count and skip unreadable lines (reported); fail: stop at the first."
        ),
    ] = "skip",
    strict: Annotated[bool, typer.Option("--strict", help="Same as --on-bad-line fail.")] = False,
    encoding: Annotated[str, typer.Option(
        "--encoding",
        help="Text encoding of the input files: UTF-8 or another encoding that keeps ASCII as is "
        "(latin-1, cp1252, ...). UTF-16/32 files must be converted to UTF-8 first (iconv).")] = "utf-8",
    col_user: Annotated[
        str | None, typer.Option("--col-user", help="Tables: the user id column.", show_default=False)
    ] = None,
    col_item: Annotated[
        str | None, typer.Option("--col-item", help="Tables: the item id column.", show_default=False)
    ] = None,
    col_rating: Annotated[
        str | None, typer.Option("--col-rating", help="Tables: the rating column.", show_default=False)
    ] = None,
    col_text: Annotated[
        str | None, typer.Option("--col-text", help="Tables: the review text column.", show_default=False)
    ] = None,
    col_summary: Annotated[
        str | None, typer.Option("--col-summary", help="Tables: the review title/summary column.", show_default=False)
    ] = None,
    col_timestamp: Annotated[
        str | None,
        typer.Option("--col-timestamp", help="Tables: the time column (Unix seconds or a date).", show_default=False),
    ] = None,
    col_title: Annotated[
        str | None, typer.Option("--col-title", help="Item tables: the title column.", show_default=False)
    ] = None,
    col_item_text: Annotated[
        str | None, typer.Option("--col-item-text", help="Item tables: the description column.", show_default=False)
    ] = None,
    delimiter: Annotated[
        str | None,
        typer.Option(
            "--delimiter",
            help="Tables: field delimiter, one character ('\\t' or 'tab' for a tab; detected if omitted).",
            show_default=False,
        ),
    ] = None,
    demo_users: Annotated[int, typer.Option("--demo-users", help="Demo: number of users.")] = 600,
    demo_items: Annotated[int, typer.Option("--demo-items", help="Demo: number of items.")] = 400,
    demo_seed: Annotated[int, typer.Option("--demo-seed", help="Demo: seed of the generated world.")] = 7,
    workspace: WorkspaceOption = None,
    json_output: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Turn raw review data into a dataset version: filter, de-duplicate, k-core, split.

    Reads Amazon (2014/2018/2023), Yelp, Steam, RecBole atomic files, RLMRec splits and generic CSV/TSV/JSONL/Parquet tables. Writes interactions with their split, users, items (with text) and review texts tagged by split, so later steps can use training reviews only. Re-running with the same inputs and settings finds the existing version and does nothing.
    """  # noqa: E501  (typer keeps a paragraph's line breaks in --help)
    if on_bad_line not in ("skip", "fail"):
        raise UsageError(f"--on-bad-line {on_bad_line!r}: use skip or fail")
    settings = PrepareSettings(
        min_rating=min_rating,
        min_user_interactions=min_user_interactions,
        min_item_interactions=min_item_interactions,
        sample_users=sample_users,
        split=split,
        ratios=_parse_ratios(ratios),
        seed=seed,
    )
    options = ReadOptions(
        encoding=encoding,
        col_user=col_user,
        col_item=col_item,
        col_rating=col_rating,
        col_text=col_text,
        col_summary=col_summary,
        col_timestamp=col_timestamp,
        col_title=col_title,
        col_item_text=col_item_text,
        delimiter={"\\t": "\t", "tab": "\t"}.get(delimiter, delimiter) if delimiter else delimiter,
    )
    if dataset is not None:
        check_name(dataset, "--dataset")
    is_demo = not sources and (dataset or "") == DEMO_NAME
    result = prepare(
        open_workspace(workspace),
        paths=list(sources or []),
        meta=list(meta or []),
        format_name=format_name,
        name=dataset,
        settings=settings,
        min_rating_given=min_rating is not None,
        options=options,
        on_bad_line="fail" if strict else on_bad_line,
        demo=DemoSpec(demo_users, demo_items, demo_seed) if is_demo else None,
        progress=Progress(enabled=not quiet and not json_output),
        mappers=list(mapper or []),
        reviews=list(reviews or []),
    )
    if json_output:
        print_json(
            {
                "dataset": result.ref.name,
                "version": result.ref.version,
                "path": str(result.ref.path),
                "reused": result.reused,
                "format": result.format_name,
                "counts": result.counts,
                "derived": [ref.label for ref in result.derived],
            }
        )
        print_text_warnings(result)  # stderr: the JSON on stdout stays parseable
        return
    if result.format_name == RLMREC:
        print_rlmrec_summary(result)
        return
    _print_prepare_summary(result)


# Typer derives the command name from the function; the `_cmd` suffix avoids shadowing.
prepare_cmd.__name__ = "prepare"


def _print_prepare_summary(result: PrepareResult) -> None:
    counts = result.counts
    settings = result.settings
    if result.reused:
        stdout.print(
            f"[green]up to date:[/] {result.ref.label} already exists with these inputs and settings; nothing to do."
        )
    else:
        stdout.print(f"[green]prepared[/] {result.ref.label}  ({result.ref.path})")
    rating = "none" if settings.min_rating is None else f"≥ {settings.min_rating:g}"
    stdout.print(
        f"format [bold]{result.format_name}[/]; rating filter {rating}; "
        f"{settings.min_user_interactions}-core users / {settings.min_item_interactions}-core items; "
        f"split {settings.split} {':'.join(f'{r:.2g}' for r in settings.ratios)}, seed {settings.seed}"
    )
    interactions = counts["interactions"]
    total = sum(interactions.values())
    table = Table(title="dataset summary", show_header=True, header_style="bold")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    table.add_row("records read", f"{counts['records_read']:,}")
    table.add_row("  below min rating", f"{counts['below_min_rating']:,}")
    table.add_row("  duplicate pairs", f"{counts['duplicates']:,}")
    table.add_row("  removed by k-core / sampling", f"{counts['distinct_pairs'] - total:,}")
    table.add_row("users", f"{counts['users']:,}")
    table.add_row("items", f"{counts['items']:,}")
    for split_name in SPLITS:
        table.add_row(f"interactions: {split_name}", f"{interactions.get(split_name, 0):,}")
    table.add_row("density", f"{counts['density']:.2e}")
    table.add_row("review text coverage", f"{counts['reviews_with_text'] / max(total, 1):.1%}")
    table.add_row("item text coverage", f"{counts['items_with_text'] / max(counts['items'], 1):.1%}")
    bad = counts.get("bad_lines", {})
    if bad.get("count"):
        first = ", ".join(f"{e['file']}:{e['line']}" for e in bad["examples"])
        table.add_row("bad lines skipped", f"{bad['count']:,} (first: {first})")
    stdout.print(table)


@dataclass
class _Entry:
    """One artifact as ``status`` shows it: its manifest, or why it cannot be read."""

    ref: ArtifactRef
    manifest: dict
    damaged: str | None
    missing_parents: list[str]

    @property
    def parents(self) -> list[dict]:
        return [p for p in self.manifest.get("parents", []) if isinstance(p, dict)]


def _entries(ws: Workspace) -> list[_Entry]:
    entries = []
    for ref in ws.all_artifacts():
        try:
            manifest, damaged = ref.manifest(), None
            if not isinstance(manifest, dict):
                manifest, damaged = {}, f"{ref.path / 'manifest.json'} is not a JSON object"
        except (OSError, LmmrecError) as error:
            manifest, damaged = {}, str(error)
        missing = [
            f"{p.get('kind')}/{p.get('name')}@{p.get('version')}"
            for p in manifest.get("parents", [])
            if isinstance(p, dict) and p.get("kind") in ARTIFACT_KINDS
            and ws.find(p["kind"], str(p.get("name")), str(p.get("version"))) is None
        ]
        entries.append(_Entry(ref, manifest, damaged, missing))
    return entries


def _artifact_line(entry: _Entry, latest: ArtifactRef | None) -> str:
    ref = entry.ref
    label = escape(ref.label)
    if entry.damaged:  # the whole reason follows the tree as a warning line
        return f"[bold red]{label} damaged[/]: its manifest.json cannot be read"
    counts = entry.manifest.get("counts", {})
    summary = ""
    if ref.kind == "datasets" and "users" in counts:
        total = sum(counts.get("interactions", {}).values())
        summary = f"{counts['users']:,} users, {counts['items']:,} items, {total:,} interactions"
    elif counts:
        summary = ", ".join(f"{k} {v}" for k, v in counts.items() if isinstance(v, (int, float)))[:120]
    mark = " [bold green](latest)[/]" if latest is not None and latest.version == ref.version else ""
    return f"[cyan]{label}[/]{mark}  {entry.manifest.get('finished_at', '')}  {escape(summary)}"


def _unfinished_line(ref: ArtifactRef) -> str:
    if ref.kind == "runs":
        epochs = "with a checkpoint" if (ref.path / "checkpoint.pt").is_file() else "before its first checkpoint"
        what = (f"interrupted run {ref.label} ({epochs}): rerun its `lmmrec train` command with --resume "
                f"to continue or --restart to discard it")
    else:
        what = f"unfinished {ref.label}: interrupted, or still being built by another process"
    return f"{what} ({ref.path})"


def _status_data(ws: Workspace) -> dict:
    out: dict = {"workspace": str(ws.root), "artifacts": [], "unfinished": []}
    for entry in _entries(ws):
        ref, manifest = entry.ref, entry.manifest
        latest = ws.latest(ref.kind, ref.name)
        out["artifacts"].append(
            {
                "kind": ref.kind,
                "name": ref.name,
                "version": ref.version,
                "latest": latest is not None and latest.version == ref.version,
                "path": str(ref.path),
                "damaged": entry.damaged,
                "missing_parents": entry.missing_parents,
                "parents": manifest.get("parents", []),
                "counts": manifest.get("counts", {}),
                "finished_at": manifest.get("finished_at"),
                "command": manifest.get("command"),
            }
        )
    out["unfinished"] = [
        {"kind": r.kind, "name": r.name, "version": r.version, "path": str(r.path)} for r in ws.unfinished()
    ]
    out["studies"] = _studies(ws)
    return out


def _studies(ws: Workspace) -> list[dict]:
    """The tuning studies of the workspace's own store (`lmmrec tune`); none without one."""
    from lmmrec_cli.tune import list_studies

    return list_studies(ws)


def _studies_table(studies: list[dict]) -> Table:
    table = Table(title="tuning studies (lmmrec tune)", header_style="bold", title_justify="left")
    for column in ("study", "cell", "best valid", "complete", "pruned", "failed", "running"):
        table.add_column(column, justify="left" if column in ("study", "cell") else "right")
    for s in studies:
        best = "-" if s["best_value"] is None else f"{s['best_value']:.4f}"
        table.add_row(escape(s["study"]), escape(s["cell"]), best, str(s["complete"]), str(s["pruned"]),
                      str(s["fail"]), str(s["running"]))
    return table


@app.command(rich_help_panel=PANEL_WORKSPACE)
def status(workspace: WorkspaceOption = None, json_output: JsonOption = False) -> None:
    """Show the workspace: datasets, their versions, and what was derived from each (lineage).

    Also lists damaged artifacts (an unreadable manifest), artifacts whose parent is gone, and
    builds that were interrupted (a training run can continue with `train --resume`)."""
    ws = open_workspace(workspace)
    cleaned = ws.clean_leftovers()  # staging and locks of killed builds
    if json_output:
        print_json({**_status_data(ws), "cleaned": [str(p) for p in cleaned]})
        return
    if cleaned:
        stdout.print(f"removed {len(cleaned)} leftovers of killed builds (staging, locks)")
    unfinished = ws.unfinished()
    if not any(ws.names(kind) for kind in ARTIFACT_KINDS):
        stdout.print(f"workspace {ws.root} is empty; start with `lmmrec prepare --dataset demo`.")
        return
    entries = _entries(ws)
    by_label = {e.ref.label: e for e in entries}
    children: dict[str, list[_Entry]] = {}
    for entry in entries:
        for parent in entry.parents:
            label = f"{parent.get('kind')}/{parent.get('name')}@{parent.get('version')}"
            if label in by_label:
                children.setdefault(label, []).append(entry)
    tree = Tree(f"[bold]workspace[/] {escape(str(ws.root))}")
    shown: set[str] = set()

    def add(node: Tree, entry: _Entry) -> None:
        shown.add(entry.ref.label)
        branch = node.add(_artifact_line(entry, ws.latest(entry.ref.kind, entry.ref.name)))
        for child in children.get(entry.ref.label, []):
            if child.ref.label not in shown:
                add(branch, child)

    # roots: artifacts with no parent in the workspace (a noisy dataset sits under its clean one)
    for kind in ARTIFACT_KINDS:
        for entry in entries:
            if entry.ref.kind == kind and entry.ref.label not in shown and not any(
                f"{p.get('kind')}/{p.get('name')}@{p.get('version')}" in by_label for p in entry.parents
            ):
                add(tree, entry)
    for entry in entries:  # parent cycles cannot happen, but nothing may go unlisted
        if entry.ref.label not in shown:
            add(tree, entry)
    stdout.print(tree)
    studies = _studies(ws)
    if studies:
        stdout.print(_studies_table(studies))
    for entry in entries:
        if entry.damaged:
            stdout.print(f"[yellow]warning:[/] {escape(entry.ref.label)} is damaged: {escape(entry.damaged)}",
                         highlight=False)
        for parent in entry.missing_parents:
            stdout.print(f"[yellow]warning:[/] {escape(entry.ref.label)}: its parent {escape(parent)} is gone",
                         highlight=False)
    for ref in unfinished:
        stdout.print(f"[yellow]warning:[/] {escape(_unfinished_line(ref))}", highlight=False)
