"""Commands for experiments: ``perturb`` and ``ablate``."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from lmmrec_cli.ablate import SLUGS, run_ablation
from lmmrec_cli.cli.app import PANEL_EXPERIMENTS, app
from lmmrec_cli.cli.options import JsonOption, QuietOption, WorkspaceOption, open_workspace
from lmmrec_cli.config import parse_params, train_config
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
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="Dataset NAME\\[@VERSION].")],
    embeddings: Annotated[
        str, typer.Option("--embeddings", "-e", help="Text vectors NAME\\[@VERSION] (from `lmmrec embed`).")
    ],
    model: Annotated[str, typer.Option("--model", "-m", help="Base model.")] = "lightgcn",
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
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="A base-model setting key=value (repeatable).", show_default=False),
    ] = None,
    plugin_param: Annotated[
        list[str] | None,
        typer.Option(
            "--plugin-param",
            help="An LMMRec setting key=value shared by all variants (repeatable).",
            show_default=False,
        ),
    ] = None,
    lr: Annotated[
        float | None, typer.Option("--lr", help="Adam learning rate (default: the model's own).", show_default=False)
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option("--batch-size", help="BPR triples per step (default: the model's own).", show_default=False),
    ] = None,
    epochs: Annotated[
        int | None, typer.Option("--epochs", help="Maximum epochs (default: the model's own).", show_default=False)
    ] = None,
    eval_every: Annotated[
        int | None,
        typer.Option("--eval-every", help="Validate every N epochs (default: the model's own).", show_default=False),
    ] = None,
    patience: Annotated[
        int | None,
        typer.Option("--patience", help="Validations without improvement before stopping (default: the "
                     "model's own).", show_default=False),
    ] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")] = "auto",
    workspace: WorkspaceOption = None,
    json_output: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Train LMMRec and its ablations on one base model; print the paper's Table II layout.

    Variants (METHOD.md §1.9): w/o MCS (λ = 0), w/o ICM (no momentum teacher), w/o GCN (prototypes on the un-propagated ID embeddings), w/o TM (the text view is an MLP of the ID embeddings: no text at all). Each is trained with the same seeds and settings; per-user test metrics are averaged over seeds and compared with the full model by a paired t-test over users (* = p < 0.05). Finished runs are found again, so a rerun trains nothing.
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
    from lmmrec_cli.train import model_class, model_config  # torch: imported only when training

    config = train_config(model_class(model).train_defaults, lr=lr, batch_size=batch_size, epochs=epochs,
                          eval_every=eval_every, patience=patience, device=device)
    config.validate()
    rows = run_ablation(
        open_workspace(workspace),
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
    metrics = ["recall@5", "ndcg@5", "recall@10", "ndcg@10"]
    table = Table(
        title=f"ablation of LMMRec on {model} / {dataset} (seeds {seeds}; * = paired t-test p < 0.05 vs LMMRec)",
        header_style="bold",
    )
    table.add_column("variant")
    for metric in metrics:
        table.add_column(metric.replace("recall", "R").replace("ndcg", "N"), justify="right")
    for row in rows:
        summary = row.result.summary()
        cells = []
        for metric in metrics:
            test = row.tests.get(metric)
            mark = "*" if test is not None and test.significant else ""
            cells.append(f"{summary[metric]:.4f}{mark}")
        table.add_row(row.variant, *cells)
    stdout.print(table)
