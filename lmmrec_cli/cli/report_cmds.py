"""Command: ``report``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lmmrec_cli.cli.app import PANEL_EXPERIMENTS, app
from lmmrec_cli.cli.options import JsonOption, WorkspaceOption, open_workspace
from lmmrec_cli.console import print_json, stdout
from lmmrec_cli.errors import UsageError
from lmmrec_cli.report_render import as_json, parse_formats, rich_table, write_report


@app.command("report", rich_help_panel=PANEL_EXPERIMENTS)
def report_cmd(
    runs: Annotated[
        list[str],
        typer.Argument(
            help="Runs: NAME (its latest version), NAME@VERSION, a run "
            "directory, or a quoted glob over run names such as 'demo-*'.",
            metavar="RUN",
            show_default=False,
        ),
    ],
    name: Annotated[str, typer.Option("--name", help="Report name: written to <workspace>/reports/NAME/.")] = "report",
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Write into this directory instead of the workspace "
            "(files are replaced one by one; other files stay).",
            show_default=False,
        ),
    ] = None,
    formats: Annotated[
        str,
        typer.Option(
            "--format",
            help="Table files: md (report.md), csv (one CSV per layout) or md,csv. report.json is always written.",
        ),
    ] = "md,csv",
    plots: Annotated[
        bool,
        typer.Option(
            "--plots/--no-plots", help="Draw PNG plots (training curves, metric bars, noise curve) with matplotlib."
        ),
    ] = True,
    baseline: Annotated[
        str,
        typer.Option(
            "--baseline",
            help="Plugin every other method is tested against on the same data set, "
            "model and seeds (* / † = higher / lower with paired t-test p < 0.05).",
        ),
    ] = "none",
    workspace: WorkspaceOption = None,
    json_output: JsonOption = False,
) -> None:
    """Tables and plots from finished runs: mean ± std over seeds, significance, the paper's layouts.

    Runs that differ only in their seed form one row (data set, model, method) with mean ± sample std of R@N and N@N over seeds, the number of seeds and the training time. * marks p < 0.05 in a two-sided paired t-test over users against the --baseline plugin († where the row is lower) (per-user metrics averaged over the seeds both share; with one seed exactly `lmmrec evaluate --compare`). Layouts added when the runs allow: Table I (base model and plugins × data sets, with LMMRec's improvement over the best rival), Table II (LMMRec ablation variants vs the full model), noise robustness (data sets from `lmmrec perturb`, by ratio; Fig. 2).

    Written as report.md, *.csv, report.json and plots/*.png into reports/NAME/ (replaced as a whole) or --out. Example: lmmrec report 'demo-lightgcn*' --name lightgcn.
    """  # noqa: E501  (typer keeps a paragraph's line breaks in --help)
    from lmmrec_cli.report import build_report  # numpy, scipy, torch: only when a report is made

    chosen_formats = parse_formats(formats)
    ws = open_workspace(workspace)
    # the destination is checked before any run is read
    if out is None:
        if not name or "/" in name or name.startswith("."):
            raise UsageError(f"--name {name!r}: use letters, digits, '-', '_' or '.'")
        target, replace_dir = ws.root / "reports" / name, True
    else:
        if out.exists() and not out.is_dir():
            raise UsageError(f"--out {out}: exists and is not a directory")
        target, replace_dir = out, False
    report = build_report(ws, runs, baseline=baseline)

    draw = None
    if plots:
        from lmmrec_cli.report_plots import draw_all

        def draw(folder: Path) -> list[str]:
            return draw_all(report, folder)

    written = write_report(report, target, replace_dir=replace_dir, title=f"lmmrec report: {name}",
                           formats=chosen_formats, draw=draw)
    if json_output:
        print_json({"path": str(target), "files": [str(p) for p in written],
                    "inputs": [f"{r.ref.name}@{r.ref.version}" for r in report.runs], **as_json(report)})
        return
    for layout in report.layouts:
        stdout.print(rich_table(layout))
    stdout.print(f"[green]report[/] {target}  ({len(written)} files: {', '.join(str(p) for p in written[:6])}"
                 f"{', ...' if len(written) > 6 else ''})")
