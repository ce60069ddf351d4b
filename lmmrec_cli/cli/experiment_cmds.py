"""Commands for experiments: ``perturb`` and ``ablate``."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from lmmrec_cli.ablate import run_ablation
from lmmrec_cli.catalog import SLUGS
from lmmrec_cli.cli.app import PANEL_EXPERIMENTS, app
from lmmrec_cli.cli.options import (
    BatchSizeOption,
    DatasetOption,
    DeviceOption,
    EpochsOption,
    EvalEveryOption,
    JsonOption,
    LrOption,
    ModelOption,
    ParamOption,
    PatienceOption,
    QuietOption,
    WorkspaceOption,
    open_workspace,
    training_settings,
)
from lmmrec_cli.config import TrainConfig, parse_params
from lmmrec_cli.console import Progress, print_json, stdout
from lmmrec_cli.data.perturb import parse_ratios, perturb
from lmmrec_cli.errors import UsageError
from lmmrec_cli.workspace import check_name


@app.command("perturb", rich_help_panel=PANEL_EXPERIMENTS)
def perturb_cmd(
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="The clean dataset (NAME or NAME@VERSION).")],
    ratio: Annotated[
        str,
        typer.Option(
            "--ratio",
            help="Noise ratio(s) relative to the training size: 0.1, 0.05,0.2 or a range 0.05..0.30 (step --step).",
        ),
    ] = "0.05..0.30",
    step: Annotated[float, typer.Option("--step", help="Step of a ratio range.")] = 0.05,
    seed: Annotated[
        int, typer.Option("--seed", help="Noise seed; keep it fixed across methods so all see the same noise.")
    ] = 0,
    name: Annotated[
        str | None,
        typer.Option(
            "--name",
            help="Name of the noisy dataset (one ratio only). [default: <dataset>-noise<percent>]",
            show_default=False,
        ),
    ] = None,
    workspace: WorkspaceOption = None,
    json_output: JsonOption = False,
) -> None:
    """Add non-existent user-item pairs to the training split (robustness experiment, Fig. 2).

    For each ratio, round(ratio × training size) uniform pairs that are in none of train, validation and test are added to train, as a new dataset version whose manifest names the clean parent and the seed. Validation and test stay identical, and users and items keep their indices, so the clean data set's motivations and text vectors apply unchanged.
    """  # noqa: E501  (typer keeps a paragraph's line breaks in --help)
    ratios = parse_ratios(ratio, step)
    if name and len(ratios) > 1:
        raise UsageError("--name works with a single --ratio; leave it out to name each version by its ratio")
    if name is not None:
        check_name(name, "--name")
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


@app.command("ablate", rich_help_panel=PANEL_EXPERIMENTS)
def ablate_cmd(
    dataset: DatasetOption,
    embeddings: Annotated[
        str, typer.Option("--embeddings", "-e", help="Text vectors NAME\\[@VERSION] (from `lmmrec embed`).")
    ],
    model: ModelOption = "lightgcn",
    seeds: Annotated[
        str, typer.Option("--seeds", help="Comma-separated seeds; every variant uses the same ones.")
    ] = "0,1,2",
    variants: Annotated[
        str | None,
        typer.Option(
            "--variants",
            help=f"Subset of: {', '.join(SLUGS.values())} (the full model is always trained).",
            show_default=False,
        ),
    ] = None,
    param: ParamOption = None,
    plugin_param: Annotated[
        list[str] | None,
        typer.Option(
            "--plugin-param",
            help="An LMMRec setting key=value shared by all variants (repeatable).",
            show_default=False,
        ),
    ] = None,
    lr: LrOption = None,
    batch_size: BatchSizeOption = None,
    epochs: EpochsOption = None,
    eval_every: EvalEveryOption = None,
    patience: PatienceOption = None,
    device: DeviceOption = TrainConfig.device,
    workspace: WorkspaceOption = None,
    json_output: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Train LMMRec and its ablations on one base model; print the paper's Table II layout.

    Variants (docs/method.md §1.9): w/o MCS (λ = 0), w/o ICM (no momentum teacher), w/o GCN (prototypes on the un-propagated ID embeddings), w/o TM (the text view is an MLP of the ID embeddings: no text at all). Each is trained with the same seeds and settings; per-user test metrics are averaged over seeds and compared with the full model by a paired t-test over users (* = p < 0.05). Finished runs are found again, so a rerun trains nothing.
    """  # noqa: E501  (typer keeps a paragraph's line breaks in --help)
    by_slug = {slug: name for name, slug in SLUGS.items()}
    chosen = None
    if variants:
        unknown = [v for v in variants.split(",") if v.strip() not in by_slug]
        if unknown:
            raise UsageError(f"unknown variant(s) {', '.join(unknown)}", hint=f"use {', '.join(SLUGS.values())}")
        chosen = [by_slug[v.strip()] for v in variants.split(",")]
    try:
        seed_list = [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError:
        raise UsageError(f"--seeds {seeds!r} is not a comma-separated list of integers") from None
    from lmmrec_cli.assembly import model_config  # torch: imported only when training

    config = training_settings(model, lr=lr, batch_size=batch_size, epochs=epochs, eval_every=eval_every,
                               patience=patience, device=device)
    ws = open_workspace(workspace)
    rows = run_ablation(
        ws,
        dataset=dataset,
        model=model,
        model_settings=model_config(model, parse_params(param or [])),
        config=config,
        seeds=seed_list,
        embeddings=embeddings,
        plugin_overrides=parse_params(plugin_param or []),
        variants=chosen,
        progress=Progress(enabled=not quiet and not json_output),
    )
    if json_output:
        print_json([row.as_json() for row in rows])
        return
    # the same Table II layout as `lmmrec report` over these runs: one renderer for both
    from lmmrec_cli.report import ablation_layout, collect_runs, group_runs
    from lmmrec_cli.report_render import rich_table

    runs = collect_runs(ws, [f"{ref.name}@{ref.version}" for row in rows for ref in row.runs])
    layout = ablation_layout(group_runs(runs))
    if layout is not None:
        layout.title = f"ablation of LMMRec on {model} / {dataset} (seeds {seeds})"
        stdout.print(rich_table(layout))
