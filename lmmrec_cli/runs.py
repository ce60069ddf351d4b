"""The run artifact ``runs/<name>/<version>/``: its files and everything that reads them back.

``config.json``          everything that made the run
``log.jsonl``            one JSON line per epoch: each loss term (mean per step), seconds,
                         validation metrics on validation epochs
``checkpoint.pt``        last state: model, plugin, optimiser, RNG states, early-stopping state
                         and the best weights so far
``best.pt``              model + plugin weights of the best validation epoch
``users.npy/items.npy``  final (best-weights, eval-forward) embeddings
``metrics.json``         test metrics of the best weights (+ validation at the best epoch)
``per_user_test.npz``    per-user Recall@N / NDCG@N of the test pass (for significance tests)

:mod:`lmmrec_cli.train` writes these files; ``evaluate``, ``explain``, ``report`` and ``ablate``
read them through this module. Checkpoints hold tensors, numbers and strings only and are loaded
with ``torch.load(weights_only=True)``: a run directory can come from anywhere (``explain --run
DIR``), and nothing in it may run code.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lmmrec_cli.assembly import build_model, dataset_graph, model_class, resolve_device
from lmmrec_cli.console import SILENT, Progress
from lmmrec_cli.data.dataset import PreparedDataset
from lmmrec_cli.errors import DamagedFileError, UsageError
from lmmrec_cli.evaluation import evaluate_split, protocol
from lmmrec_cli.metrics import DEFAULT_KS, RankingResult
from lmmrec_cli.models.base import BaseModel, Plugin
from lmmrec_cli.plugin_setup import NO_PLUGIN, PluginSpec, build_spec, plugin_class
from lmmrec_cli.workspace import ArtifactRef, Workspace

CONFIG_FILE = "config.json"
LOG_FILE = "log.jsonl"
CHECKPOINT_FILE = "checkpoint.pt"
BEST_FILE = "best.pt"
METRICS_FILE = "metrics.json"
PER_USER_TEST_FILE = "per_user_test.npz"


def json_tuples(values: dict[str, Any]) -> dict[str, Any]:
    """JSON turned tuples into lists; Config dataclasses (models and plugins) declare tuples."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}


def load_tensors(path: Path, device: torch.device, *, hint: str | None = None) -> Any:
    """A checkpoint file, loaded with ``weights_only=True`` (tensors, numbers, strings, lists and
    dicts; no object that could run code). Anything else, or a damaged file, is refused with one
    line that names the file."""
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as error:
        raise UsageError(f"{path}: refused to load: it holds more than tensors and numbers ({_refusal_reason(error)})",
                         hint=hint or "this file was not written by lmmrec; train the run again") from None
    except FileNotFoundError:
        raise
    except (OSError, RuntimeError, EOFError, ValueError, zipfile.BadZipFile) as error:
        # a truncated zip archive: "PytorchStreamReader failed ...", or EINVAL from its reader
        raise DamagedFileError(path, error, hint=hint) from None


def _refusal_reason(error: BaseException) -> str:
    """The line of torch's refusal that names what the file holds. Its first line advises turning the
    safe loader off, which is exactly what must not be done with a file one did not write;
    checkpoints of older lmmrec versions (numpy RNG objects) are refused the same way."""
    for line in str(error).splitlines():
        line = re.sub(r"\x1b\[[0-9;]*m", "", line).strip()  # torch bolds some words with ANSI codes
        if "GLOBAL" in line or "Unsupported" in line:
            return line
    return "objects other than tensors, numbers and strings"


def read_run_json(ref: ArtifactRef, filename: str) -> dict[str, Any]:
    """A JSON file of a run; a damaged one is a :class:`DamagedFileError`, a missing one a
    :class:`UsageError`, each one line naming it."""
    try:
        return ref.read_json(filename)
    except OSError as error:
        raise UsageError(f"{ref.label} is not a readable run: {error}") from None


def stored_test_result(ref: ArtifactRef) -> RankingResult:
    """The per-user metrics of the run's own test pass."""
    path = ref.path / PER_USER_TEST_FILE
    try:
        return RankingResult.from_npz(path)
    except FileNotFoundError:
        raise
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
        raise DamagedFileError(path, error, hint=ref.rebuild_hint) from None


def rebuild_plugin(workspace: Workspace, name: str, settings: dict[str, Any]) -> PluginSpec:
    """The spec of a stored run's plugin, from its recorded settings and the same text vectors."""
    if name == "none":
        return NO_PLUGIN
    cls = plugin_class(name)
    config = cls.Config(**json_tuples(settings.get("config", {})))
    parent = settings.get("embeddings")
    ref = workspace.find("embeddings", parent["name"], parent["version"]) if parent else None
    if parent and ref is None:
        raise UsageError(
            f"the run's text vectors embeddings/{parent['name']}@{parent['version']} are gone from the workspace"
        )
    return build_spec(name, config, ref)


@dataclass
class LoadedRun:
    ref: ArtifactRef
    config: dict[str, Any]
    metrics: dict[str, Any]
    dataset: PreparedDataset
    model: BaseModel
    plugin: Plugin
    device: torch.device


def load_run(workspace: Workspace, reference: str, *, device: str = "auto") -> LoadedRun:
    """Rebuild a finished run's model (+ plugin) with its best weights on ``device``."""
    ref = workspace.resolve("runs", reference)
    config = read_run_json(ref, CONFIG_FILE)
    metrics = read_run_json(ref, METRICS_FILE)
    target = resolve_device(device)
    dataset_parent = config["dataset"]
    data = PreparedDataset.open(workspace, f"{dataset_parent['name']}@{dataset_parent['version']}")
    graph = dataset_graph(data).to(target)
    settings = model_class(config["model"]).Config(**json_tuples(config["model_config"]))
    model = build_model(config["model"], settings, graph, 0).to(target)
    plugin_spec = rebuild_plugin(workspace, config["plugin"]["name"], config["plugin"]["settings"])
    plugin = plugin_spec.factory(graph, model).to(target)
    best = load_tensors(ref.path / BEST_FILE, target, hint=ref.rebuild_hint)
    model.load_state_dict(best["model"])
    plugin.load_state_dict(best["plugin"])
    return LoadedRun(ref, config, metrics, data, model, plugin, target)


@dataclass
class RunResult:
    """Per-user metrics of one run, with what they were computed under."""

    ref: ArtifactRef
    result: RankingResult
    context: dict[str, Any]
    """The run's dataset (as a parent record) and the evaluation protocol."""
    source: str
    """Where the numbers come from: the stored test pass, or recomputed on a device."""


def run_result(workspace: Workspace, reference: str, *, split: str = "test", mask_valid: bool = False,
               ks: tuple[int, ...] | None = None, device: str = "auto", chunk_size: int = 2048,
               progress: Progress = SILENT) -> RunResult:
    """Per-user metrics of a run; the stored test pass is reused when it is what was asked
    (test split, same masking, same cut-offs), else the run is loaded and evaluated again."""
    ref = workspace.resolve("runs", reference)
    stored = ref.manifest().get("settings", {})
    stored_ks = tuple(stored.get("train", {}).get("ks", ()))
    stored_mask = bool(stored.get("train", {}).get("mask_valid", False))
    wanted_ks = tuple(ks or stored_ks or DEFAULT_KS)
    context = {"dataset": stored.get("dataset", {}), "protocol": protocol(split, mask_valid, wanted_ks)}
    if split == "test" and mask_valid == stored_mask and wanted_ks == stored_ks:
        read_run_json(ref, METRICS_FILE)  # the stored pass belongs to a complete, readable run
        return RunResult(ref, stored_test_result(ref), context, "stored test pass")
    loaded = load_run(workspace, f"{ref.name}@{ref.version}", device=device)
    result = evaluate_split(loaded.model, loaded.plugin, loaded.dataset, split=split, mask_valid=mask_valid,
                            ks=wanted_ks, chunk_size=chunk_size, device=loaded.device, progress=progress)
    return RunResult(ref, result, context, f"recomputed on {loaded.device}")
