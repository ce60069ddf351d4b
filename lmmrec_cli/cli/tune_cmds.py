"""Command: ``tune`` (validation-only hyperparameter search, ``lmmrec_cli.tune``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from lmmrec_cli.cli.app import PANEL_EXPERIMENTS, app
from lmmrec_cli.cli.options import JsonOption, WorkspaceOption, open_workspace
from lmmrec_cli.config import TrainConfig, parse_ks, parse_params
from lmmrec_cli.console import print_json, stderr, stdout
from lmmrec_cli.errors import UsageError

_DEFAULTS = TrainConfig()


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
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="Dataset NAME[@VERSION] to tune on.",
                                         show_default=False)],
    trials: Annotated[int, typer.Option("--trials", "-n", help="Trials of the study in total (a rerun continues "
                                        "up to this many; give every compared method the same number).")],
    model: Annotated[str, typer.Option("--model", "-m", help="Base model (`lmmrec models` shows its ranges).")
                     ] = "lightgcn",
    plugin: Annotated[str, typer.Option("--plugin", "-P", help="Plugin trained with the model, or none "
                                        "(`lmmrec plugins` shows its ranges).")] = "none",
    embeddings: Annotated[str | None, typer.Option("--embeddings", "-e", help="Text vectors the plugin reads.",
                                                   show_default=False)] = None,
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
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="A fixed model setting key=value "
                                                    "(repeatable), outside the search.", show_default=False)] = None,
    plugin_param: Annotated[list[str] | None, typer.Option("--plugin-param", help="A fixed plugin setting "
                                                           "key=value (repeatable).", show_default=False)] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="BPR triples per step.")] = _DEFAULTS.batch_size,
    epochs: Annotated[int, typer.Option("--epochs", help="Maximum epochs of each trial.")] = _DEFAULTS.epochs,
    eval_every: Annotated[int, typer.Option("--eval-every", help="Validate (and report to the pruner) every N "
                                            "epochs.")] = _DEFAULTS.eval_every,
    patience: Annotated[int, typer.Option("--patience", help="Early-stopping patience in validations.")
                        ] = _DEFAULTS.patience,
    k: Annotated[str, typer.Option("--k", help="Cut-offs N of Recall@N and NDCG@N.")] = "5,10,20",
    select: Annotated[str, typer.Option("--select", help="The validation metric maximised (and used for "
                                        "early stopping), as in `train --select`.")] = _DEFAULTS.select_metric,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")] = _DEFAULTS.device,
    threads: Annotated[int, typer.Option("--threads", help="CPU threads for torch; 0 = torch's default.")] = 0,
    workspace: WorkspaceOption = None,
    json_output: JsonOption = False,
) -> None:
    """Search hyperparameters on validation data only (Optuna TPE, seeded, median pruning).

    Each trial is an ordinary training run that never reads the test split; its objective is the validation metric of --select. The study lives in the workspace's SQLite file (or --storage); rerunning the command continues it up to --trials, and several processes (or machines, with PostgreSQL) may work on one study at once. studies/NAME/ gets summary.json, history.png and importances.png; `optuna-dashboard sqlite:///WORKSPACE/studies/optuna.db` shows the same store live.
    """  # noqa: E501  (typer keeps a paragraph's line breaks in --help)
    from lmmrec_cli.tune import read_space_file, summary_json, tune

    config = TrainConfig(batch_size=batch_size, epochs=epochs, eval_every=eval_every, patience=patience,
                         seed=seed, ks=parse_ks(k), select_metric=select.lower(), device=device, threads=threads)
    seeds = _seeds(best_seeds)
    overrides = read_space_file(space) if space is not None else None
    ws = open_workspace(workspace)

    def progress(number: int, state: str, value: float | None) -> None:
        if not json_output:
            shown = f"{value:.4f}" if value is not None else "-"
            stderr.print(f"trial {number}: {state.lower()} {shown}", highlight=False)

    result = tune(ws, dataset=dataset, model=model, plugin=plugin, embeddings=embeddings, trials=trials,
                  study=study, storage=storage, space=overrides,
                  space_source=f"--space {space}", timeout=timeout, seed=seed, config=config,
                  model_params=parse_params(param or []), plugin_params=parse_params(plugin_param or []),
                  prune=not no_prune, startup_trials=startup_trials, best_seeds=seeds, run_name=name,
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
        table = Table(title=f"best trial {best['trial']}: valid {select} {best['value']:.4f}", header_style="bold",
                      title_justify="left")
        table.add_column("setting")
        table.add_column("value", justify="right")
        for key, value in best["params"].items():
            table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
        stdout.print(table)
    for run in result.seed_runs:
        stdout.print(f"seed {run['seed']}: {run['run']} test {select} {run['test'][select.lower()]:.4f}"
                     f"{' (found)' if run['reused'] else ''}")
    stdout.print(f"files: {result.folder}")
