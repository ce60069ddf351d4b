"""Typed configurations shared by the CLI, recipes and tests.

:class:`TrainConfig` holds the trainer's settings (defaults: LMMRec §III-A — batch 512, Adam,
lr 3e-3 — and RLMRec's model selection: validate every 3 epochs on Recall@20, patience 5).
Model hyperparameters live in each model's own ``Config`` dataclass; :func:`apply_overrides`
sets their fields from ``key=value`` strings with type checking and a clear error for unknown
keys.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass
from typing import Any

from lmmrec_cli.errors import UsageError


@dataclass(frozen=True)
class Range:
    """Where ``lmmrec tune`` searches a setting: ``low..high`` (``log``: on a log scale, for
    rates and weights spanning decades), or one of ``choices``."""

    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()

    def describe(self) -> str:
        if self.choices:
            return "{" + ", ".join(map(str, self.choices)) + "}"
        return f"{self.low:g}..{self.high:g}{' (log)' if self.log else ''}"


TUNE = "tune"
"""Field-metadata key of a setting's default search range."""


def tunable(default: Any, low: float | None = None, high: float | None = None, *, log: bool = False,
            choices: tuple[Any, ...] = ()) -> Any:
    """A dataclass field with its default search range beside it (read by :func:`search_ranges`)."""
    return dataclasses.field(default=default, metadata={TUNE: Range(low, high, log, tuple(choices))})


def search_ranges(config_class: type) -> dict[str, Range]:
    """The default search ranges a Config declares, by setting name."""
    return {f.name: f.metadata[TUNE] for f in dataclasses.fields(config_class) if TUNE in f.metadata}


@dataclass
class TrainConfig:
    lr: float = tunable(3e-3, 1e-4, 3e-2, log=True)
    """Adam learning rate (LMMRec: 0.003)."""
    batch_size: int = 512
    """BPR triples per step (LMMRec: 512)."""
    epochs: int = 300
    """Maximum epochs; early stopping usually ends the run first."""
    eval_every: int = 3
    """Validate every this many epochs (RLMRec ``test_step`` 3)."""
    patience: int = 5
    """Stop after this many validations without a better Recall@20 (RLMRec: 5)."""
    min_epochs: int = 0
    """No early stop at or before this epoch (WeightedGCL's ``warm_up_step``: 30). A model whose
    loss sits on a plateau before it starts to learn needs it (see the README, base models)."""
    seed: int = 0
    """Seeds model init, negative sampling, dropout and noise."""
    weight_decay: float = 0.0
    """Adam weight decay (LMMRec: none; models carry their own L2 terms)."""
    ks: tuple[int, ...] = (5, 10, 20)
    """Cut-offs N of Recall@N / NDCG@N."""
    select_metric: str = "recall@20"
    """Validation metric for early stopping and best weights (RLMRec: Recall@20)."""
    mask_valid: bool = False
    """Also mask validation items in the test pass (RecBole); RLMRec does not."""
    # -- settings that do not change results (kept out of the run's version hash) ------------
    device: str = "auto"
    """auto | cpu | cuda | cuda:N."""
    eval_chunk: int = 2048
    """Users scored at once in full ranking (memory ≈ chunk × items × 4 bytes)."""
    checkpoint_every: int = 1
    """Write the resumable checkpoint every this many epochs."""
    threads: int = 0
    """CPU threads for torch (0 = torch's default). Set 1 on small graphs or a busy machine, where
    OpenMP hand-offs cost more than the work (benchmarks/bench_train.py measures it)."""

    NON_RESULT_FIELDS: typing.ClassVar[tuple[str, ...]] = (
        "device", "eval_chunk", "checkpoint_every", "threads")

    def result_key(self) -> dict[str, Any]:
        """The fields that decide the result (the run version hashes these)."""
        data = dataclasses.asdict(self)
        for name in self.NON_RESULT_FIELDS:
            data.pop(name)
        if data["min_epochs"] == 0:  # added later: runs from before keep their versions
            data.pop("min_epochs")
        return data

    def validate(self) -> None:
        for name in ("lr", "weight_decay"):
            if not math.isfinite(getattr(self, name)):
                raise UsageError(f"--{name.replace('_', '-')} must be a finite number")
        checks = [
            (self.lr > 0, "--lr must be positive"),
            (self.batch_size >= 1, "--batch-size must be at least 1"),
            (self.epochs >= 1, "--epochs must be at least 1"),
            (self.eval_every >= 1, "--eval-every must be at least 1"),
            (self.patience >= 1, "--patience must be at least 1"),
            (self.min_epochs >= 0, "--min-epochs must be 0 or positive"),
            (self.eval_chunk >= 1, "the evaluation chunk must be at least 1"),
            (self.checkpoint_every >= 1, "checkpoint_every must be at least 1"),
            (self.threads >= 0, "--threads must be 0 (default) or positive"),
            (all(k >= 1 for k in self.ks) and len(self.ks) > 0, "--k needs positive cut-offs"),
        ]
        for ok, message in checks:
            if not ok:
                raise UsageError(message)
        if self.weight_decay < 0:
            raise UsageError("weight_decay must be 0 or positive")
        kind, _, k = self.select_metric.partition("@")
        if kind not in ("recall", "ndcg") or not k.isdigit() or int(k) not in self.ks:
            raise UsageError(
                f"selection metric {self.select_metric!r} is not one of the evaluated metrics",
                hint=f"use recall@K or ndcg@K with K in {','.join(map(str, self.ks))}",
            )


def train_config(model_defaults: dict[str, Any] | None = None, **explicit: Any) -> TrainConfig:
    """The trainer's settings: :class:`TrainConfig`'s defaults, then the model's own training
    defaults (``BaseModel.train_defaults``, e.g. WeightedGCL's paper settings), then every
    ``explicit`` value that is not None (what the user set)."""
    values = dict(model_defaults or {})
    values.update({key: value for key, value in explicit.items() if value is not None})
    return TrainConfig(**values)


@dataclass(frozen=True)
class Bounds:
    """The values a numeric setting accepts: ``low ≤ x ≤ high`` (``<`` where open); None = no bound."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def contains(self, value: float) -> bool:
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return not (self.high is not None and (value >= self.high if self.high_open else value > self.high))

    def describe(self) -> str:
        parts = []
        if self.low is not None:
            parts.append(f"{'above' if self.low_open else 'at least'} {self.low:g}")
        if self.high is not None:
            parts.append(f"{'below' if self.high_open else 'at most'} {self.high:g}")
        return " and ".join(parts) or "finite"


AT_LEAST_ONE = Bounds(1)
NON_NEGATIVE = Bounds(0)
POSITIVE = Bounds(0, low_open=True)
FRACTION = Bounds(0, 1)

SETTING_BOUNDS: dict[str, Bounds] = {
    # sizes and counts
    "dim": AT_LEAST_ONE, "layers": NON_NEGATIVE, "prototypes": AT_LEAST_ONE, "hidden": AT_LEAST_ONE,
    "text_dim": NON_NEGATIVE, "low_pass_rank": NON_NEGATIVE, "levels": AT_LEAST_ONE, "codes": AT_LEAST_ONE,
    "user_codes": AT_LEAST_ONE, "item_codes": AT_LEAST_ONE, "degree": AT_LEAST_ONE, "max_fit_rows": AT_LEAST_ONE,
    "teacher_refresh_steps": AT_LEAST_ONE, "seed": NON_NEGATIVE,
    # weights of loss terms and regularisers
    "reg": NON_NEGATIVE, "reg_weight": NON_NEGATIVE, "cl_weight": NON_NEGATIVE, "mcs_weight": NON_NEGATIVE,
    "icm_weight": NON_NEGATIVE, "kd_weight": NON_NEGATIVE, "mixture_weight": NON_NEGATIVE,
    # shapes of distributions and schedules
    "temperature": POSITIVE, "keep_rate": Bounds(0, 1, low_open=True), "eps": NON_NEGATIVE,
    "momentum": FRACTION, "warmup_epochs": NON_NEGATIVE, "init_std": NON_NEGATIVE, "gammas": FRACTION,
}
"""The accepted range of every numeric setting of a model or plugin, by field name: one place for
all of them (a test checks every numeric field of every Config is listed). ``apply_overrides``
refuses a value outside its range, or not finite, with one line naming the setting."""


SHORTCUT_FLAGS = ("dim", "layers", "reg")
"""Model settings `lmmrec train` also takes as their own flags (``--dim 64``)."""


def _as_flag(flag: str, name: str, value: Any) -> str:
    if flag == "--param" and name in SHORTCUT_FLAGS:
        return f"--{name} {value}"
    shown = ",".join(map(str, value)) if isinstance(value, tuple) else value
    return f"{flag} {name}={shown}"


def check_ranges(config: Any, *, owner: str, flag: str = "--param") -> None:
    """Raise :class:`UsageError` for a numeric field of ``config`` outside :data:`SETTING_BOUNDS`,
    naming the option that sets it (``flag``: ``--param`` for models, ``--plugin-param`` for plugins)."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        values = value if isinstance(value, tuple) else (value,)
        for item in values:
            if isinstance(item, bool) or not isinstance(item, (int, float)):
                continue
            allowed = SETTING_BOUNDS.get(f.name, Bounds())
            if not math.isfinite(item) or not allowed.contains(item):
                finite = "" if math.isfinite(item) else "a finite number "
                raise UsageError(f"{owner}: {_as_flag(flag, f.name, value)} is out of range: {f.name} must be "
                                 f"{finite}{allowed.describe()}",
                                 hint="`lmmrec models` / `lmmrec plugins` list each setting and its default")


def parse_ks(text: str) -> tuple[int, ...]:
    try:
        ks = tuple(sorted({int(part) for part in text.split(",") if part.strip()}))
    except ValueError:
        ks = ()
    if not ks or min(ks) < 1:
        raise UsageError(f"--k {text!r} is not a comma-separated list of positive integers like 5,10,20")
    return ks


def _convert(raw: str, annotation: Any, key: str) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if raw.lower() in ("none", "null", "") and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(raw, inner[0], key)
    if origin is tuple:
        return tuple(_convert(part.strip(), args[0], key) for part in raw.split(",") if part.strip())
    if annotation is bool:
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError("expected true or false")
    if annotation in (int, float, str):
        return annotation(raw)
    raise ValueError(f"unsupported type {annotation}")


def apply_overrides(config: Any, overrides: dict[str, str], *, owner: str, flag: str = "--param") -> Any:
    """A copy of the dataclass ``config`` with ``overrides`` (strings) converted and applied.

    Unknown keys and unconvertible values raise :class:`UsageError` naming the valid keys.
    """
    hints = typing.get_type_hints(type(config))
    fields = {f.name for f in dataclasses.fields(config)}
    changes = {}
    for key, raw in overrides.items():
        if key not in fields:
            raise UsageError(
                f"{owner} has no setting {key!r}",
                hint=f"its settings: {', '.join(sorted(fields))}",
            )
        try:
            changes[key] = _convert(str(raw), hints[key], key)
        except ValueError as error:
            raise UsageError(f"{owner} setting {key}={raw!r}: {error}") from None
    updated = dataclasses.replace(config, **changes)
    check_ranges(updated, owner=owner, flag=flag)
    return updated


def parse_params(items: list[str]) -> dict[str, str]:
    """``["layers=2", "eps=0.1"]`` → ``{"layers": "2", "eps": "0.1"}``."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--param {item!r} is not key=value", hint="e.g. --param temperature=0.2")
        out[key.strip().replace("-", "_")] = value.strip()
    return out


def config_fields(config_class: type) -> list[dict[str, Any]]:
    """Name, type, default and help text of each field (for ``--help`` and ``lmmrec models``)."""
    docs = _field_docs(config_class)
    out = []
    for f in dataclasses.fields(config_class):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        out.append({"name": f.name, "default": default, "help": docs.get(f.name, ""),
                    "tune": f.metadata[TUNE].describe() if TUNE in f.metadata else None})
    return out


def _field_docs(config_class: type) -> dict[str, str]:
    """Docstrings written under dataclass fields (read from the source; empty if unavailable)."""
    import ast
    import inspect
    import textwrap

    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(config_class)))
    except (OSError, TypeError):
        return {}
    docs: dict[str, str] = {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    for node, following in zip(body, body[1:], strict=False):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                and isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)):
            docs[node.target.id] = " ".join(following.value.value.split())
    return docs


__all__ = ["Range", "tunable", "search_ranges", "TrainConfig", "train_config", "Bounds", "SETTING_BOUNDS",
           "check_ranges",
           "apply_overrides", "parse_params", "parse_ks", "config_fields"]
