"""Writing a :class:`~lmmrec_cli.report.Report`: Markdown, CSV, JSON, rich tables, the directory.

A report directory is replaced as a whole: it is written beside its place and renamed in, so a
reader sees the old report or the new one (in ``--out DIR`` each file is replaced atomically and
files of other tools are left alone).
"""

from __future__ import annotations

import csv
import io
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich import box
from rich.table import Table

from lmmrec_cli.errors import UsageError
from lmmrec_cli.workspace import atomic_write_json, atomic_write_text, now_iso

if TYPE_CHECKING:  # the report itself needs numpy/scipy/torch; `lmmrec --help` must not
    from lmmrec_cli.report import Layout, Report

FORMATS = ("md", "csv")


def parse_formats(text: str) -> list[str]:
    chosen = [f.strip().lower() for f in text.split(",") if f.strip()]
    unknown = [f for f in chosen if f not in FORMATS]
    if not chosen or unknown:
        raise UsageError(f"--format {text!r}: use md, csv or md,csv")
    return chosen


def markdown(report: Report, title: str, plots: list[str]) -> str:
    lines = [f"# {title}", "",
             f"{len(report.runs)} runs in {len(report.groups)} groups; written {now_iso()}.", ""]
    for layout in report.layouts:
        lines += [f"## {layout.title}", "", *_md_table(layout.headers, layout.rows), ""]
        lines += [*(f"_{note}_" for note in layout.notes), ""]
    if plots:
        lines += ["## plots", ""] + [f"![{Path(p).stem}]({p})" for p in plots] + [""]
    lines += ["## runs", ""] + [f"- `{r.ref.name}@{r.ref.version}`" for r in report.runs] + [""]
    return "\n".join(lines)


def _md_table(headers: list[str], rows: list[list[str]]) -> list[str]:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    align = ["---" if i < _label_columns(headers) else "---:" for i in range(len(headers))]
    return [line(headers), "| " + " | ".join(align) + " |", *(line(r) for r in rows)]


def _label_columns(headers: list[str]) -> int:
    labels = {"dataset", "model", "method", "variant", "metric"}
    count = 0
    for header in headers:
        if header not in labels:
            break
        count += 1
    return max(count, 1)


def csv_text(records: list[dict[str, Any]]) -> str:
    columns: list[str] = []
    for record in records:
        columns += [k for k in record if k not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow({k: ("" if v is None else v) for k, v in record.items()})
    return buffer.getvalue()


def rich_table(layout: Layout) -> Table:
    table = Table(title=layout.title, header_style="bold", caption=" ".join(layout.notes) or None,
                  box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    labels = _label_columns(layout.headers)
    for index, header in enumerate(layout.headers):
        table.add_column(header, justify="left" if index < labels else "right", no_wrap=True)
    for row in layout.rows:
        table.add_row(*(cell.replace(" ± ", "±") for cell in row))  # narrower: fits 160 columns
    return table


def as_json(report: Report) -> dict[str, Any]:
    return {layout.key: {"title": layout.title, "headers": layout.headers, "rows": layout.rows,
                         "records": layout.records, "notes": layout.notes}
            for layout in report.layouts}


def write_report(report: Report, target: Path, *, replace_dir: bool, title: str, formats: list[str],
                 draw: Callable[[Path], list[str]] | None) -> list[Path]:
    """Write the report into ``target``; return the files written (relative to ``target``).

    ``replace_dir``: build the whole directory beside ``target`` and swap it in (a report in the
    workspace); otherwise replace each file atomically inside ``target`` (``--out``).
    """
    build = target.parent / f".{target.name}.tmp-{os.getpid()}" if replace_dir else target
    if replace_dir and build.exists():
        shutil.rmtree(build)
    build.mkdir(parents=True, exist_ok=True)
    try:
        plots = draw(build) if draw is not None else []
        written = [Path(p) for p in plots]
        if "md" in formats:
            atomic_write_text(build / "report.md", markdown(report, title, plots))
            written.append(Path("report.md"))
        if "csv" in formats:
            for layout in report.layouts:
                atomic_write_text(build / f"{layout.key}.csv", csv_text(layout.records))
                written.append(Path(f"{layout.key}.csv"))
        atomic_write_json(build / "report.json", as_json(report))
        written.append(Path("report.json"))
    except BaseException:
        if replace_dir:
            shutil.rmtree(build, ignore_errors=True)
        raise
    if replace_dir:
        old = target.parent / f".{target.name}.old-{os.getpid()}"
        if target.exists():
            os.replace(target, old)
        os.replace(build, target)
        shutil.rmtree(old, ignore_errors=True)
    return written

