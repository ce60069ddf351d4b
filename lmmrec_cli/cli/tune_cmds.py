"""Command: ``tune`` (validation-only hyperparameter search, ``lmmrec_cli.tune``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from lmmrec_cli.cli.app import PANEL_EXPERIMENTS, app
from lmmrec_cli.cli.options import (
    DEFAULT_K,
    BatchSizeOption,
    DatasetOption,
    DeviceOption,
    EmbeddingsOption,
    EpochsOption,
    EvalEveryOption,
    JsonOption,
    KOption,
    LrOption,
    MinEpochsOption,
    ModelOption,
    ParamOption,
    PatienceOption,
    PluginOption,
    PluginParamOption,
    SelectOption,
    ThreadsOption,
    WorkspaceOption,
    model_overrides,
    open_workspace,
    training_settings,
    warn_if_selection_saturated,
)
from lmmrec_cli.config import parse_params
from lmmrec_cli.console import print_json, stderr, stdout
from lmmrec_cli.errors import UsageError


def _seeds(text: str | None) -> list[int]:
    if not text:
        return []
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        seeds = []
    if not seeds:
        raise UsageError(f"--best-seeds {text!r} is not a comma-separated list of integers like 0,1,2")
    return seeds


@app.command("tune", rich_help_panel=PANEL_EXPERIMENTS)
def tune_cmd(
    dataset: DatasetOption,
    trials: Annotated[int, typer.Option("--trials", "-n", help="Trials of the study in total (a rerun continues "
                                        "up to this many; give every compared method the same number).")],
    model: ModelOption = "lightgcn",
    plugin: PluginOption = "none",
    embeddings: EmbeddingsOption = None,
    study: Annotated[str | None, typer.Option("--study", help="Study name (default: DATASET-MODEL-PLUGIN). "
                                              "A name belongs to one dataset/model/plugin cell.",
                                              show_default=False)] = None,
    storage: Annotated[str | None, typer.Option(
        "--storage", help="Optuna RDB storage URL shared by processes and machines, e.g. "
        "postgresql://user:pass@host/db (needs lmmrec[postgres]). Default: the workspace's "
        "studies/optuna.db (SQLite).", show_default=False)] = None,
    space: Annotated[Path | None, typer.Option(
        "--space", help="TOML or YAML file overriding or narrowing the declared ranges: sections [train] "
        "[model] [plugin]; entries {low=, high=, log=}, a list of choices, or a fixed value.",
        show_default=False)] = None,
    timeout: Annotated[float | None, typer.Option("--timeout", help="Stop starting trials after this many seconds.",
                                                  show_default=False)] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seeds the TPE sampler and every trial's training.")] = 0,
    best_seeds: Annotated[str | None, typer.Option(
        "--best-seeds", help="After the search, retrain the best settings with these seeds (e.g. 0,1,2) as "
        "ordinary runs and test each once; `report` shows them with the tuned values and budget.",
        show_default=False)] = None,
    name: Annotated[str | None, typer.Option("--name", help="Names of the --best-seeds runs: NAME-sSEED "
                                             "(default: train's, DATASET-MODEL[-PLUGIN]-sSEED).",
                                             show_default=False)] = None,
    no_prune: Annotated[bool, typer.Option("--no-prune", help="Train every trial to its end (no median "
                                           "pruning on the periodic validations).")] = False,
    startup_trials: Annotated[int, typer.Option("--startup-trials", help="Trials run to the end before "
                                                "pruning starts comparing against them.")] = 5,
    prune_warmup: Annotated[int | None, typer.Option(
        "--prune-warmup", help="Epochs before which no trial is pruned. Default: the first epoch at which "
        "early stopping could end the run, max(--min-epochs + 1, --eval-every × (--patience + 1)), so a "
        "method whose validation rises late is not judged on its first validations. Lower it to save "
        "time; use the same value for every method you compare.", show_default=False)] = None,
    param: ParamOption = None,
    plugin_param: PluginParamOption = None,
    lr: LrOption = None,
    batch_size: BatchSizeOption = None,
    epochs: EpochsOption = None,
    eval_every: EvalEveryOption = None,
    patience: PatienceOption = None,
    min_epochs: MinEpochsOption = None,
    k: KOption = DEFAULT_K,
    select: SelectOption = None,
    device: DeviceOption = "auto",
    threads: ThreadsOption = 0,
    workspace: WorkspaceOption = None,
    json_output: JsonOption = False,
) -> None:
    """Search hyperparameters on validation data only (Optuna TPE, seeded, median pruning).

    Each trial is an ordinary training run that never reads the test split; its objective is the validation metric of --select. The study lives in the workspace's SQLite file (or --storage); rerunning the command continues it up to --trials, and several processes (or machines, with PostgreSQL) may work on one study at once. studies/NAME/ gets summary.json, history.png and importances.png; `optuna-dashboard sqlite:///WORKSPACE/studies/optuna.db` shows the same store live.

    A new study's first trial is the settings as given: the models' and plugins' defaults, changed by --lr, --param and --plugin-param (searched settings keep their ranges; these only set where the search starts). Give the settings of your untuned comparison there, and the tuned result is measured against them.
    """  # noqa: E501  (typer keeps a paragraph's line breaks in --help)
    from lmmrec_cli.tune import read_space_file, summary_json, tune

    config = training_settings(model, k=k, select=select, lr=lr, batch_size=batch_size, epochs=epochs,
                               eval_every=eval_every, patience=patience, min_epochs=min_epochs, seed=seed,
                               device=device, threads=threads)
    seeds = _seeds(best_seeds)
    overrides = read_space_file(space) if space is not None else None
    ws = open_workspace(workspace)
    warn_if_selection_saturated(ws, dataset, config.select_metric)

    def progress(number: int, state: str, value: float | None) -> None:
        if not json_output:
            shown = f"{value:.4f}" if value is not None else "-"
            stderr.print(f"trial {number}: {state.lower()} {shown}", highlight=False)

    result = tune(ws, dataset=dataset, model=model, plugin=plugin, embeddings=embeddings, trials=trials,
                  study=study, storage=storage, space=overrides,
                  space_source=f"--space {space}", timeout=timeout, seed=seed, config=config,
                  model_params=model_overrides(param), plugin_params=parse_params(plugin_param or []),
                  prune=not no_prune, startup_trials=startup_trials, prune_warmup=prune_warmup,
                  best_seeds=seeds, run_name=name,
                  on_trial=progress)
    if json_output:
        print_json(json.loads(summary_json(result)))
        return
    counts = result.summary["counts"]
    stdout.print(f"study [bold]{result.study}[/] ({result.storage}): ran {result.ran} trial(s) now; in total "
                 f"{counts['complete']} complete, {counts['pruned']} pruned, {counts['fail']} failed, "
                 f"{counts['running']} running; {counts['trial_seconds']:.0f} s of trials")
    best = result.summary["best"]
    if best is not None:
        table = Table(title=f"best trial {best['trial']}: valid {config.select_metric} {best['value']:.4f}",
                      header_style="bold", title_justify="left")
        table.add_column("setting")
        table.add_column("value", justify="right")
        for key, value in best["params"].items():
            table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
        stdout.print(table)
    for run in result.seed_runs:
        stdout.print(f"seed {run['seed']}: {run['run']} test {config.select_metric} "
                     f"{run['test'][config.select_metric]:.4f}"
                     f"{' (found)' if run['reused'] else ''}")
    stdout.print(f"files: {result.folder}")
