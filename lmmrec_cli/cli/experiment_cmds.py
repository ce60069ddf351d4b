"""Commands for experiments: ``perturb``."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.table import Table

from lmmrec_cli.cli.app import PANEL_EXPERIMENTS, app
from lmmrec_cli.cli.options import JsonOption, WorkspaceOption, open_workspace
from lmmrec_cli.console import print_json, stdout
from lmmrec_cli.data.perturb import parse_ratios, perturb
from lmmrec_cli.errors import UsageError


@app.command("perturb", rich_help_panel=PANEL_EXPERIMENTS)
def perturb_cmd(
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="The clean dataset (NAME or NAME@VERSION).")],
    ratio: Annotated[str, typer.Option("--ratio", help="Noise ratio(s) relative to the training size: 0.1, 0.05,0.2 or a range 0.05..0.30 (step --step).")] = "0.05..0.30",
    step: Annotated[float, typer.Option("--step", help="Step of a ratio range.")] = 0.05,
    seed: Annotated[int, typer.Option("--seed", help="Noise seed; keep it fixed across methods so all see the same noise.")] = 0,
    name: Annotated[Optional[str], typer.Option("--name", help="Name of the noisy dataset (one ratio only). [default: <dataset>-noise<percent>]", show_default=False)] = None,
    workspace: WorkspaceOption = None,
    json_output: JsonOption = False,
) -> None:
    """Add non-existent user-item pairs to the training split (robustness experiment, Fig. 2).

    For each ratio, round(ratio × training size) uniform pairs that are in none of train,
    validation and test are added to train, as a new dataset version whose manifest names the
    clean parent and the seed. Validation and test stay identical, and users and items keep
    their indices, so the clean data set's motivations and text vectors apply unchanged.
    """
    ratios = parse_ratios(ratio, step)
    if name and len(ratios) > 1:
        raise UsageError("--name works with a single --ratio; leave it out to name each version by its ratio")
    ws = open_workspace(workspace)
    results = [perturb(ws, dataset, r, seed, name) for r in ratios]
    if json_output:
        print_json([{"ratio": r.ratio, "dataset": r.ref.label, "added": r.added, "reused": r.reused} for r in results])
        return
    table = Table(title=f"noisy versions of {dataset} (seed {seed})", header_style="bold")
    for column in ("ratio", "dataset", "pairs added", ""):
        table.add_column(column)
    for r in results:
        table.add_row(f"{r.ratio:g}", r.ref.label, f"{r.added:,}", "up to date" if r.reused else "new")
    stdout.print(table)
