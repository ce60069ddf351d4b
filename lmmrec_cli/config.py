"""Typed configurations shared by the CLI, recipes and tests.

:class:`TrainConfig` holds the trainer's settings (defaults: LMMRec §III-A — batch 512, Adam,
lr 3e-3 — and RLMRec's model selection: validate every 3 epochs on Recall@20, patience 5).
Model hyperparameters live in each model's own ``Config`` dataclass; :func:`apply_overrides`
sets their fields from ``key=value`` strings with type checking and a clear error for unknown
keys.
"""

from __future__ import annotations

import dataclasses
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
    """CPU threads for torch (0 = torch's default). On small graphs or a busy machine 1 is often
    fastest: OpenMP hand-offs cost more than the work (measured ~10× on the demo data)."""

    NON_RESULT_FIELDS: typing.ClassVar[tuple[str, ...]] = (
        "device", "eval_chunk", "checkpoint_every", "threads")

    def result_key(self) -> dict[str, Any]:
        """The fields that decide the result (the run version hashes these)."""
        data = dataclasses.asdict(self)
        for name in self.NON_RESULT_FIELDS:
            data.pop(name)
        return data

    def validate(self) -> None:
        checks = [
            (self.lr > 0, "--lr must be positive"),
            (self.batch_size >= 1, "--batch-size must be at least 1"),
            (self.epochs >= 1, "--epochs must be at least 1"),
            (self.eval_every >= 1, "--eval-every must be at least 1"),
            (self.patience >= 1, "--patience must be at least 1"),
            (self.eval_chunk >= 1, "the evaluation chunk must be at least 1"),
            (self.checkpoint_every >= 1, "checkpoint_every must be at least 1"),
            (self.threads >= 0, "--threads must be 0 (default) or positive"),
            (all(k >= 1 for k in self.ks) and len(self.ks) > 0, "--k needs positive cut-offs"),
        ]
        for ok, message in checks:
            if not ok:
                raise UsageError(message)
        kind, _, k = self.select_metric.partition("@")
        if kind not in ("recall", "ndcg") or not k.isdigit() or int(k) not in self.ks:
            raise UsageError(
                f"selection metric {self.select_metric!r} is not one of the evaluated metrics",
                hint=f"use recall@K or ndcg@K with K in {','.join(map(str, self.ks))}",
            )


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


def apply_overrides(config: Any, overrides: dict[str, str], *, owner: str) -> Any:
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
    return dataclasses.replace(config, **changes)


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


__all__ = ["Range", "tunable", "search_ranges", "TrainConfig",
           "apply_overrides", "parse_params", "parse_ks", "config_fields"]
