"""Commands: ``train``, ``evaluate`` and ``models``."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

import typer
from rich.table import Table

from lmmrec_cli.catalog import MODELS, PLUGINS
from lmmrec_cli.cli.app import PANEL_TRAIN, app
from lmmrec_cli.cli.options import (
    DEFAULT_K,
    BatchSizeOption,
    DatasetOption,
    DeviceOption,
    DimOption,
    EmbeddingsOption,
    EpochsOption,
    EvalChunkOption,
    EvalEveryOption,
    JsonOption,
    KOption,
    LayersOption,
    LrOption,
    MaskValidOption,
    MinEpochsOption,
    ModelOption,
    ParamOption,
    PatienceOption,
    PluginOption,
    PluginParamOption,
    QuietOption,
    RegOption,
    SeedOption,
    SelectOption,
    ThreadsOption,
    WorkspaceOption,
    model_overrides,
    open_workspace,
    training_settings,
    warn_if_selection_saturated,
)
from lmmrec_cli.config import TrainConfig, config_fields, parse_ks, parse_params, train_config
from lmmrec_cli.console import Progress, print_json, stdout
from lmmrec_cli.errors import UsageError
from lmmrec_cli.workspace import check_name

# Training, metrics and the model classes are imported inside the commands: they pull in
# torch and scipy.stats (seconds of start-up) that every other lmmrec command would pay for.

_DEFAULTS = TrainConfig()


def _protocol_line(proto: dict[str, Any], n_users: int, n_items: int | None = None) -> str:
    items = f"all {n_items:,} items" if n_items else "all items"
    return (f"{proto['split']} split: full ranking of {items} for {n_users:,} users with ≥1 "
            f"{proto['split']} item; masked: {' + '.join(proto['masked'])} items; "
            f"Recall@N = {proto['recall_normalisation']}; NDCG@N: {proto['ndcg']}")


def _metrics_table(title: str, summary: dict[str, float]) -> Table:
    table = Table(title=title, header_style="bold")
    names = list(summary)
    for name in names:
        table.add_column(name.replace("recall", "R").replace("ndcg", "N"), justify="right")
    table.add_row(*(f"{summary[n]:.4f}" for n in names))
    return table


@app.command("train", rich_help_panel=PANEL_TRAIN)
def train_cmd(
    dataset: DatasetOption,
    model: ModelOption = "lightgcn",
    plugin: PluginOption = "none",
    embeddings: EmbeddingsOption = None,
    plugin_param: PluginParamOption = None,
    name: Annotated[
        str | None,
        typer.Option(
            "--name",
            help="Run name (default: DATASET-MODEL-sSEED, e.g. demo-lightgcn-s0). "
            "The version is a hash of everything that decides the result.",
            show_default=False,
        ),
    ] = None,
    dim: DimOption = None,
    layers: LayersOption = None,
    reg: RegOption = None,
    param: ParamOption = None,
    lr: LrOption = None,
    batch_size: BatchSizeOption = None,
    epochs: EpochsOption = None,
    eval_every: EvalEveryOption = None,
    patience: PatienceOption = None,
    min_epochs: MinEpochsOption = None,
    seed: SeedOption = _DEFAULTS.seed,
    device: DeviceOption = _DEFAULTS.device,
    k: KOption = DEFAULT_K,
    select: SelectOption = None,
    mask_valid: MaskValidOption = _DEFAULTS.mask_valid,
    eval_chunk: EvalChunkOption = _DEFAULTS.eval_chunk,
    threads: ThreadsOption = _DEFAULTS.threads,
    resume: Annotated[
        bool,
        typer.Option("--resume", help="Continue an interrupted run with the same settings from its last checkpoint."),
    ] = False,
    restart: Annotated[
        bool, typer.Option("--restart", help="Discard an interrupted run with the same settings and start again.")
    ] = False,
    workspace: WorkspaceOption = None,
    json_output: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Train a base model on a dataset version, select it on validation, test it once.

    Protocol (RLMRec): each epoch visits every training interaction once with one uniform negative; validation Recall@20 every --eval-every epochs with training items masked; early stopping after --patience validations without improvement; best weights restored; one full-ranking test pass.

    The run directory runs/NAME/VERSION/ holds config.json, log.jsonl (loss terms and validation metrics per epoch), checkpoint.pt (last state, for --resume), best.pt, users.npy / items.npy, metrics.json and per_user_test.npz. Re-running with the same settings finds the finished run and does nothing.
    """  # noqa: E501  (typer keeps a paragraph's line breaks in --help)
    from lmmrec_cli.assembly import model_config
    from lmmrec_cli.plugin_setup import plugin_spec
    from lmmrec_cli.train import train

    settings = model_config(model, model_overrides(param, dim=dim, layers=layers, reg=reg))
    config = training_settings(model, k=k, select=select, lr=lr, batch_size=batch_size, epochs=epochs,
                               eval_every=eval_every, patience=patience, min_epochs=min_epochs, seed=seed,
                               mask_valid=mask_valid, device=device, eval_chunk=eval_chunk, threads=threads)
    if resume and restart:
        raise UsageError("--resume and --restart exclude each other")
    if name is not None:
        check_name(name, "--name")
    ws = open_workspace(workspace)
    spec = plugin_spec(ws, plugin, embeddings=embeddings, overrides=parse_params(plugin_param or []))
    warn_if_selection_saturated(ws, dataset, config.select_metric)
    result = train(ws, dataset=dataset, model=model, model_settings=settings, plugin=spec,
                   config=config, name=name, resume=resume, restart=restart,
                   progress=Progress(enabled=not quiet and not json_output))
    if json_output:
        print_json({"run": result.ref.name, "version": result.ref.version, "path": str(result.ref.path),
                    "reused": result.reused, "resumed_from_epoch": result.resumed_from_epoch,
                    "model_config": dataclasses.asdict(settings), "metrics": result.metrics})
        return
    metrics = result.metrics
    if result.reused:
        stdout.print(f"[green]up to date:[/] {result.ref.label} was already trained with these settings.")
    else:
        resumed = f" (resumed from epoch {result.resumed_from_epoch})" if result.resumed_from_epoch else ""
        stdout.print(f"[green]trained[/] {result.ref.label}{resumed}  ({result.ref.path})")
    stdout.print(f"epochs run {metrics['epochs_run']}, best epoch {metrics['best_epoch']}"
                 f"{', stopped early' if metrics['stopped_early'] else ''}; device {metrics['device']}")
    stdout.print(_protocol_line(metrics["protocol"], metrics["test_users"]))
    stdout.print(_metrics_table("test (best validation weights)", metrics["test"]))


@app.command("evaluate", rich_help_panel=PANEL_TRAIN)
def evaluate_cmd(
    runs: Annotated[
        list[str],
        typer.Argument(
            help="Run(s): NAME, NAME@VERSION or a run directory. Several runs are compared with the first.",
            show_default=False,
        ),
    ],
    compare: Annotated[
        list[str] | None,
        typer.Option(
            "--compare",
            "-c",
            help="Further run(s) to compare with the first RUN (repeatable; same as listing them as arguments).",
            show_default=False,
        ),
    ] = None,
    split: Annotated[str, typer.Option("--split", help="test or valid.")] = "test",
    mask_valid: Annotated[
        bool,
        typer.Option(
            "--mask-valid",
            help="Also mask validation items when ranking the test split "
            "(RecBole's protocol). Default: RLMRec's, training items only.",
        ),
    ] = False,
    k: Annotated[
        str | None,
        typer.Option(
            "--k", help="Cut-offs N, e.g. 5,10,20 (default: those the run was trained with).", show_default=False
        ),
    ] = None,
    device: Annotated[
        str, typer.Option("--device", help="auto, cpu, cuda or cuda:N (used only when metrics are recomputed).")
    ] = "auto",
    chunk: Annotated[
        int, typer.Option("--eval-chunk", help="Users scored at once (memory ≈ chunk × items × 4 bytes).")
    ] = 2048,
    workspace: WorkspaceOption = None,
    json_output: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Full-ranking Recall@N / NDCG@N of trained runs, and paired significance tests.

    The run's stored test pass (per_user_test.npz) is used when split, masking and cut-offs are those it was trained with; anything else is recomputed from best.pt and printed (or returned with --json), never written into the run: runs are immutable artifacts.

    Comparing runs (lmmrec evaluate A B, or A --compare B) needs runs on the same dataset version. The table shows each metric of each run, the relative change vs the first run and two-sided paired tests over users (t-test / Wilcoxon signed-rank); * marks t-test p < 0.05, as in the LMMRec tables.
    """  # noqa: E501  (typer keeps a paragraph's line breaks in --help)
    from lmmrec_cli.metrics import paired_test
    from lmmrec_cli.runs import run_result

    references = list(runs) + list(compare or [])
    if split not in ("test", "valid"):
        raise UsageError(f"--split {split!r}: use test or valid")
    ks = parse_ks(k) if k else None
    ws = open_workspace(workspace)
    progress = Progress(enabled=not quiet and not json_output)
    evaluated = [run_result(ws, r, split=split, mask_valid=mask_valid, ks=ks, device=device, chunk_size=chunk,
                            progress=progress) for r in references]
    datasets = {(e.context["dataset"].get("name"), e.context["dataset"].get("version")) for e in evaluated}
    if len(evaluated) > 1 and len(datasets) > 1:
        raise UsageError(
            "the runs were trained on different dataset versions; paired tests need the same users",
            hint=", ".join(
                f"{e.ref.label}: {e.context['dataset'].get('name')}@{e.context['dataset'].get('version')}"
                for e in evaluated
            ),
        )
    base_ref, base, info = evaluated[0].ref, evaluated[0].result, evaluated[0].context
    names = base.names()
    comparisons = [
        {"run": e.ref.label, "tests": [paired_test(base, e.result, m).as_dict() for m in names]}
        for e in evaluated[1:]
    ]
    if json_output:
        print_json({
            "protocol": info["protocol"],
            "users": int(len(base.users)),
            "runs": [{"run": e.ref.label, "metrics": e.result.summary(), "source": e.source} for e in evaluated],
            "baseline": base_ref.label,
            "comparisons": comparisons,
        })
        return
    stdout.print(_protocol_line(info["protocol"], len(base.users)))
    if len(evaluated) == 1:
        stdout.print(_metrics_table(f"{base_ref.label} ({evaluated[0].source})", base.summary()))
        return
    table = Table(title=f"{split}: relative change vs {base_ref.label}; p-values of paired tests over "
                        f"{len(base.users):,} users (* = t-test p < 0.05)", header_style="bold")
    table.add_column("metric")
    table.add_column(base_ref.label, justify="right")
    for e in evaluated[1:]:
        table.add_column(e.ref.label, justify="right")
        table.add_column("Δ", justify="right")
        table.add_column("p (t / W)", justify="right")
    for index, metric in enumerate(names):
        row = [metric, f"{base.summary()[metric]:.4f}"]
        for comparison in comparisons:
            test = comparison["tests"][index]
            star = "*" if test["significant"] else ""
            row += [f"{test['mean_b']:.4f}{star}", f"{test['relative']:+.2%}",
                    f"{test['t_pvalue']:.3g} / {test['wilcoxon_pvalue']:.3g}"]
        table.add_row(*row)
    stdout.print(table)


def _print_settings(listing: dict[str, dict[str, Any]], json_output: bool) -> None:
    """``{name: {description, settings}}`` as JSON or as one table of settings per entry."""
    if json_output:
        print_json(listing)
        return
    for name, entry in listing.items():
        if not entry["settings"]:
            stdout.print(f"[bold]{name}[/bold]: {entry['description']} (no settings)\n")
            continue
        table = Table(title=f"{name}: {entry['description']}", header_style="bold", title_justify="left")
        table.add_column("setting")
        table.add_column("default", justify="right")
        table.add_column("tune range", justify="right")
        table.add_column("meaning")
        for f in entry["settings"]:
            table.add_row(f["name"], str(f["default"]), f["tune"] or "", f["help"])
        stdout.print(table)
        if "training" in entry:
            shown = ", ".join(f"{key} {value}{'*' if key in entry['training_own'] else ''}"
                              for key, value in entry["training"].items())
            stdout.print(f"  training: {shown} (* = the model's own, else the trainer's default; "
                         "train flags override both)\n")


@app.command("models", rich_help_panel=PANEL_TRAIN)
def models_cmd(json_output: JsonOption = False) -> None:
    """List the base models and every setting `--param key=value` can change, with defaults."""
    shown = ("lr", "batch_size", "epochs", "eval_every", "patience", "min_epochs", "select_metric")
    listing = {}
    for entry in MODELS:
        own = entry.train_defaults()
        training = dataclasses.asdict(train_config(own))
        listing[entry.name] = {"description": entry.description, "settings": config_fields(entry.config_class()),
                               "training": {key: training[key] for key in shown}, "training_own": sorted(own)}
    _print_settings(listing, json_output)


@app.command("plugins", rich_help_panel=PANEL_TRAIN)
def plugins_cmd(json_output: JsonOption = False) -> None:
    """List the plugins and every setting `--plugin-param key=value` can change, with defaults."""
    listing = {e.name: {"description": e.description,
                        "settings": config_fields(e.config_class()) if e.name != "none" else []} for e in PLUGINS}
    _print_settings(listing, json_output)
