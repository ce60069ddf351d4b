"""Options shared by several commands, declared once (Annotated aliases: a command declares
``lr: LrOption = TRAIN.lr``), and the helpers that turn them into settings."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from lmmrec_cli.catalog import MODELS, PLUGINS
from lmmrec_cli.config import TrainConfig, parse_ks, parse_params, train_config
from lmmrec_cli.console import stderr
from lmmrec_cli.workspace import DEFAULT_WORKSPACE, ENV_WORKSPACE, Workspace

WorkspaceOption = Annotated[
    Path | None,
    typer.Option(
        "--workspace",
        "-w",
        envvar=ENV_WORKSPACE,
        help=f"Workspace directory (default: ./{DEFAULT_WORKSPACE}).",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of tables.")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]


def open_workspace(path: Path | None) -> Workspace:
    return Workspace.locate(path)


# -- training: one declaration per option, shared by `train`, `ablate` and the experiment
# commands; defaults come from TrainConfig and the model's own Config. -------------------------

_TRAIN = TrainConfig()


def _names(entries) -> str:
    return ", ".join(e.name for e in entries)


DatasetOption = Annotated[
    str,
    typer.Option("--dataset", "-d", help="Dataset to train on: NAME or NAME@VERSION (from `lmmrec prepare`).",
                 show_default=False),
]
ModelOption = Annotated[
    str,
    typer.Option("--model", "-m",
                 help=f"Base model: {_names(MODELS)}. `lmmrec models` lists each model's settings."),
]
PluginOption = Annotated[
    str,
    typer.Option("--plugin", "-P",
                 help=f"Plugin trained with the base model: {_names(PLUGINS)}. "
                 "`lmmrec plugins` lists their settings."),
]
EmbeddingsOption = Annotated[
    str | None,
    typer.Option("--embeddings", "-e",
                 help="Text vectors the plugin reads: NAME[@VERSION] from `lmmrec embed` "
                 "(same users and items as the dataset).", show_default=False),
]
PluginParamOption = Annotated[
    list[str] | None,
    typer.Option("--plugin-param",
                 help="A plugin setting as key=value (repeatable), e.g. "
                 "--plugin-param mcs_weight=0.1 --plugin-param use_icm=false.", show_default=False),
]
ParamOption = Annotated[
    list[str] | None,
    typer.Option("--param", "-p",
                 help="A model setting as key=value (repeatable), e.g. -p temperature=0.2 -p variant=original. "
                 "Unknown keys are refused.", show_default=False),
]
DimOption = Annotated[
    int | None,
    typer.Option("--dim", help="Embedding dimension (default: 32, LMMRec §III-A).", show_default=False),
]
LayersOption = Annotated[
    int | None,
    typer.Option("--layers",
                 help="Propagation layers / polynomial order (default: the model's own: LightGCN 3, SGL 3, "
                 "SimGCL 3, WeightedGCL 2, PolyCF 4).", show_default=False),
]
RegOption = Annotated[
    float | None,
    typer.Option("--reg", help="L2 weight of the model's regulariser (default: the model's own).",
                 show_default=False),
]
LrOption = Annotated[
    float | None,
    typer.Option("--lr", help="Adam learning rate (default: the model's own, see `lmmrec models`; else "
                 f"LMMRec: {_TRAIN.lr:g}).", show_default=False),
]
BatchSizeOption = Annotated[
    int | None,
    typer.Option("--batch-size", help="BPR triples per step (default: the model's own; else LMMRec: "
                 f"{_TRAIN.batch_size}).", show_default=False),
]
EpochsOption = Annotated[
    int | None,
    typer.Option("--epochs", help="Maximum epochs; an epoch visits every training interaction once "
                 f"(default: the model's own; else {_TRAIN.epochs}).", show_default=False),
]
EvalEveryOption = Annotated[
    int | None,
    typer.Option("--eval-every", help="Validate every N epochs on the selection metric (default: the "
                 f"model's own; else RLMRec's {_TRAIN.eval_every}).", show_default=False),
]
PatienceOption = Annotated[
    int | None,
    typer.Option("--patience", help="Stop after this many validations without improvement; the best "
                 f"weights are restored (default: the model's own; else RLMRec's {_TRAIN.patience}).",
                 show_default=False),
]
MinEpochsOption = Annotated[
    int | None,
    typer.Option("--min-epochs", help="No early stop at or before this epoch (default: the model's own, "
                 "e.g. WeightedGCL's 30; else 0). Raise it when the loss sits on a plateau first.",
                 show_default=False),
]
SeedOption = Annotated[
    int,
    typer.Option("--seed", help="Seed of init, sampling, dropout and noise: same seed + same device = same metrics."),
]
DeviceOption = Annotated[str, typer.Option("--device", help="auto (CUDA if available), cpu, cuda or cuda:N.")]
KOption = Annotated[str, typer.Option("--k", help="Cut-offs N of Recall@N and NDCG@N.")]
SelectOption = Annotated[
    str | None,
    typer.Option("--select", help="Validation metric for early stopping and best weights (default: the "
                 f"model's own; else RLMRec's {_TRAIN.select_metric}).", show_default=False),
]
MaskValidOption = Annotated[
    bool,
    typer.Option("--mask-valid",
                 help="Also mask validation items in the test pass (RecBole). "
                 "Default: RLMRec's protocol, training items only."),
]
EvalChunkOption = Annotated[
    int,
    typer.Option("--eval-chunk", help="Users scored at once in full ranking (memory ≈ chunk × items × 4 bytes)."),
]
ThreadsOption = Annotated[
    int,
    typer.Option("--threads",
                 help="CPU threads for torch; 0 = torch's default. 1 is often fastest on small graphs or a busy "
                 "machine."),
]

DEFAULT_K = ",".join(str(k) for k in _TRAIN.ks)


def model_overrides(param: list[str] | None, *, dim: int | None = None, layers: int | None = None,
                    reg: float | None = None) -> dict[str, str]:
    """``--param key=value`` pairs plus the shortcuts ``--dim``, ``--layers``, ``--reg``."""
    overrides = parse_params(param or [])
    for key, value in (("dim", dim), ("layers", layers), ("reg", reg)):
        if value is not None:
            overrides[key] = str(value)
    return overrides


def training_settings(model: str, *, k: str = DEFAULT_K, select: str | None = None,
                      **explicit: Any) -> TrainConfig:
    """The validated :class:`TrainConfig` of the training options above: the trainer's defaults,
    then the model's own (``BaseModel.train_defaults``), then every option the user set (not None)."""
    from lmmrec_cli.assembly import model_class  # torch: imported only when training

    config = train_config(model_class(model).train_defaults, ks=parse_ks(k),
                          select_metric=select.lower() if select else None, **explicit)
    config.validate()
    return config


def warn_if_selection_saturated(ws: Any, dataset: str, metric: str) -> None:
    """One warning line when the selection metric cannot tell models apart on this data set
    (:func:`lmmrec_cli.evaluation.saturated_selection`); the run goes on."""
    from lmmrec_cli.data.dataset import PreparedDataset
    from lmmrec_cli.evaluation import saturated_selection

    warning = saturated_selection(PreparedDataset.open(ws, dataset), metric)
    if warning:
        stderr.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)
