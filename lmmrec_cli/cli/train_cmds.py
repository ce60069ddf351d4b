"""Commands: ``train``, ``evaluate`` and ``models``."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from lmmrec_cli.cli.app import PANEL_TRAIN, app
from lmmrec_cli.cli.options import JsonOption, QuietOption, WorkspaceOption, open_workspace
from lmmrec_cli.config import TrainConfig, config_fields, parse_ks, parse_params
from lmmrec_cli.console import Progress, print_json, stdout
from lmmrec_cli.errors import UsageError
from lmmrec_cli.models.names import DESCRIPTIONS
from lmmrec_cli.workspace import ArtifactRef, Workspace, check_name

if TYPE_CHECKING:
    from lmmrec_cli.metrics import RankingResult

# Training, metrics and the model classes are imported inside the commands: they pull in
# torch and scipy.stats (seconds of start-up) that every other lmmrec command would pay for.

_DEFAULTS = TrainConfig()


def _model_list() -> str:
    return ", ".join(DESCRIPTIONS)


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
    dataset: Annotated[
        str,
        typer.Option(
            "--dataset",
            "-d",
            help="Dataset to train on: NAME or NAME@VERSION (from `lmmrec prepare`).",
            show_default=False,
        ),
    ],
    model: Annotated[
        str,
        typer.Option(
            "--model", "-m", help=f"Base model: {_model_list()}. `lmmrec models` lists each model's settings."
        ),
    ] = "lightgcn",
    plugin: Annotated[
        str,
        typer.Option(
            "--plugin",
            "-P",
            help="Plugin trained with the base model: none, lmmrec, rlmrec-con, "
            "uist, once, autograph. `lmmrec plugins` lists their settings.",
        ),
    ] = "none",
    embeddings: Annotated[
        str | None,
        typer.Option(
            "--embeddings",
            "-e",
            help="Text vectors the plugin reads: NAME[@VERSION] from "
            "`lmmrec embed` (same users and items as the dataset).",
            show_default=False,
        ),
    ] = None,
    plugin_param: Annotated[
        list[str] | None,
        typer.Option(
            "--plugin-param",
            help="A plugin setting as key=value (repeatable), e.g. "
            "--plugin-param mcs_weight=0.1 --plugin-param use_icm=false.",
            show_default=False,
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(
            "--name",
            help="Run name (default: DATASET-MODEL-sSEED, e.g. demo-lightgcn-s0). "
            "The version is a hash of everything that decides the result.",
            show_default=False,
        ),
    ] = None,
    dim: Annotated[
        int | None, typer.Option("--dim", help="Embedding dimension (default: 32, LMMRec §III-A).", show_default=False)
    ] = None,
    layers: Annotated[
        int | None,
        typer.Option(
            "--layers",
            help="Propagation layers / polynomial order (default: the model's "
            "own: LightGCN 3, SGL 3, SimGCL 3, WeightedGCL 2, PolyCF 4).",
            show_default=False,
        ),
    ] = None,
    reg: Annotated[
        float | None,
        typer.Option(
            "--reg", help="L2 weight of the model's regulariser (default: the model's own).", show_default=False
        ),
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            "-p",
            help="A model setting as key=value (repeatable), e.g. -p "
            "temperature=0.2 -p variant=original. Unknown keys are refused.",
            show_default=False,
        ),
    ] = None,
    lr: Annotated[float, typer.Option("--lr", help="Adam learning rate (LMMRec: 0.003).")] = _DEFAULTS.lr,
    batch_size: Annotated[
        int, typer.Option("--batch-size", help="BPR triples per step (LMMRec: 512).")
    ] = _DEFAULTS.batch_size,
    epochs: Annotated[
        int, typer.Option("--epochs", help="Maximum epochs (an epoch visits every training interaction once).")
    ] = _DEFAULTS.epochs,
    eval_every: Annotated[
        int, typer.Option("--eval-every", help="Validate every N epochs on the selection metric (RLMRec: 3).")
    ] = _DEFAULTS.eval_every,
    patience: Annotated[
        int,
        typer.Option(
            "--patience",
            help="Stop after this many validations without improvement; the best weights are restored (RLMRec: 5).",
        ),
    ] = _DEFAULTS.patience,
    seed: Annotated[
        int,
        typer.Option(
            "--seed", help="Seed of init, sampling, dropout and noise: same seed + same device = same metrics."
        ),
    ] = _DEFAULTS.seed,
    device: Annotated[
        str, typer.Option("--device", help="auto (CUDA if available), cpu, cuda or cuda:N.")
    ] = _DEFAULTS.device,
    k: Annotated[str, typer.Option("--k", help="Cut-offs N of Recall@N and NDCG@N.")] = "5,10,20",
    select: Annotated[
        str, typer.Option("--select", help="Validation metric for early stopping and best weights.")
    ] = _DEFAULTS.select_metric,
    mask_valid: Annotated[
        bool,
        typer.Option(
            "--mask-valid",
            help="Also mask validation items in the test pass (RecBole). "
            "Default: RLMRec's protocol, training items only.",
        ),
    ] = False,
    eval_chunk: Annotated[
        int,
        typer.Option("--eval-chunk", help="Users scored at once in full ranking (memory ≈ chunk × items × 4 bytes)."),
    ] = _DEFAULTS.eval_chunk,
    threads: Annotated[
        int,
        typer.Option(
            "--threads",
            help="CPU threads for torch; 0 = torch's default. 1 is often fastest on small graphs or a busy machine.",
        ),
    ] = 0,
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
    from lmmrec_cli.plugin_setup import plugin_spec
    from lmmrec_cli.train import model_config, train

    overrides = parse_params(param or [])
    for key, value in (("dim", dim), ("layers", layers), ("reg", reg)):
        if value is not None:
            overrides[key] = str(value)
    settings = model_config(model, overrides)
    config = TrainConfig(lr=lr, batch_size=batch_size, epochs=epochs, eval_every=eval_every,
                         patience=patience, seed=seed, ks=parse_ks(k), select_metric=select.lower(),
                         mask_valid=mask_valid, device=device, eval_chunk=eval_chunk,
                         threads=threads)
    if resume and restart:
        raise UsageError("--resume and --restart exclude each other")
    if name is not None:
        check_name(name, "--name")
    ws = open_workspace(workspace)
    spec = plugin_spec(ws, plugin, embeddings=embeddings, overrides=parse_params(plugin_param or []))
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


def _evaluate_one(ws: Workspace, reference: str, split: str, mask_valid: bool,
                  ks: tuple[int, ...] | None, device: str, chunk: int,
                  progress: Progress) -> tuple[ArtifactRef, RankingResult, dict[str, Any], str]:
    """Per-user metrics of a run; the stored test pass is reused when it is what was asked."""
    from lmmrec_cli.plugin_setup import resolver
    from lmmrec_cli.train import evaluate_split, load_run, protocol, stored_test_result

    ref = ws.resolve("runs", reference)
    loaded = None
    stored = ref.manifest().get("settings", {})
    stored_ks = tuple(stored.get("train", {}).get("ks", ()))
    stored_mask = bool(stored.get("train", {}).get("mask_valid", False))
    wanted_ks = ks or stored_ks or (5, 10, 20)
    dataset = stored.get("dataset", {})
    if split == "test" and mask_valid == stored_mask and tuple(wanted_ks) == stored_ks:
        result, source = stored_test_result(ref), "stored test pass"
    else:
        loaded = load_run(ws, f"{ref.name}@{ref.version}", device=device, plugin_resolver=resolver(ws))
        result = evaluate_split(loaded.model, loaded.plugin, loaded.dataset, split=split,
                                mask_valid=mask_valid, ks=tuple(wanted_ks), chunk_size=chunk,
                                device=loaded.device, progress=progress)
        source = f"recomputed on {loaded.device}"
    return ref, result, {"dataset": dataset, "protocol": protocol(split, mask_valid, tuple(wanted_ks))}, source


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

    references = list(runs) + list(compare or [])
    if split not in ("test", "valid"):
        raise UsageError(f"--split {split!r}: use test or valid")
    ks = parse_ks(k) if k else None
    ws = open_workspace(workspace)
    progress = Progress(enabled=not quiet and not json_output)
    evaluated = [_evaluate_one(ws, r, split, mask_valid, ks, device, chunk, progress) for r in references]
    datasets = {(e[2]["dataset"].get("name"), e[2]["dataset"].get("version")) for e in evaluated}
    if len(evaluated) > 1 and len(datasets) > 1:
        raise UsageError(
            "the runs were trained on different dataset versions; paired tests need the same users",
            hint=", ".join(
                f"{e[0].label}: {e[2]['dataset'].get('name')}@{e[2]['dataset'].get('version')}" for e in evaluated
            ),
        )
    base_ref, base, info, _ = evaluated[0]
    names = base.names()
    comparisons = [
        {"run": ref.label, "tests": [paired_test(base, result, m).as_dict() for m in names]}
        for ref, result, _, _ in evaluated[1:]
    ]
    if json_output:
        print_json({
            "protocol": info["protocol"],
            "users": int(len(base.users)),
            "runs": [{"run": ref.label, "metrics": result.summary(), "source": source}
                     for ref, result, _, source in evaluated],
            "baseline": base_ref.label,
            "comparisons": comparisons,
        })
        return
    stdout.print(_protocol_line(info["protocol"], len(base.users)))
    if len(evaluated) == 1:
        stdout.print(_metrics_table(f"{base_ref.label} ({evaluated[0][3]})", base.summary()))
        return
    table = Table(title=f"{split}: relative change vs {base_ref.label}; p-values of paired tests over "
                        f"{len(base.users):,} users (* = t-test p < 0.05)", header_style="bold")
    table.add_column("metric")
    table.add_column(base_ref.label, justify="right")
    for ref, _, _, _ in evaluated[1:]:
        table.add_column(ref.label, justify="right")
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


@app.command("models", rich_help_panel=PANEL_TRAIN)
def models_cmd(json_output: JsonOption = False) -> None:
    """List the base models and every setting `--param key=value` can change, with defaults."""
    from lmmrec_cli.models.registry import MODELS

    listing = {
        name: {"description": DESCRIPTIONS.get(name, ""), "settings": config_fields(cls.Config)}
        for name, cls in MODELS.items()
    }
    _print_settings(listing, json_output)


@app.command("plugins", rich_help_panel=PANEL_TRAIN)
def plugins_cmd(json_output: JsonOption = False) -> None:
    """List the plugins and every setting `--plugin-param key=value` can change, with defaults."""
    from lmmrec_cli.plugin_setup import DESCRIPTIONS as PLUGIN_DESCRIPTIONS
    from lmmrec_cli.plugin_setup import PLUGIN_CLASSES

    listing = {
        name: {"description": PLUGIN_DESCRIPTIONS.get(name, ""),
               "settings": config_fields(cls.Config) if name != "none" else []}
        for name, cls in PLUGIN_CLASSES.items()
    }
    _print_settings(listing, json_output)
