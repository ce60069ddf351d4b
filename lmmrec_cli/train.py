"""The training loop: batching, early stopping, checkpoints, the test pass.

``train()`` turns a dataset version + a base model (+ a plugin) + a :class:`TrainConfig` into a
run artifact ``runs/<name>/<version>/`` (version = content hash of the dataset version, model,
model config, the result-deciding train settings, the device type and the plugin); its files
are described in :mod:`lmmrec_cli.runs`.

Model selection is RLMRec's (``encoder/trainer/trainer.py``): validate every ``eval_every``
epochs on Recall@20 with the training items masked, keep the best weights, stop after
``patience`` validations without improvement, restore the best weights, test once.

The run is built in the workspace's resumable staging directory; a killed run keeps its
checkpoint there and ``resume=True`` continues from it. Every random draw comes from RNGs
whose states are in the checkpoint (torch's global CPU/CUDA generators for dropout and noise,
a dedicated CPU generator for sampling), so on the same device a resumed run ends with the
same metrics as an unbroken one. Checkpoints hold tensors and plain numbers only (numpy's RNG
state is stored as a tensor and its counters), so they load with ``weights_only=True``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lmmrec_cli.assembly import build_model, dataset_graph, model_class, resolve_device
from lmmrec_cli.config import TrainConfig, train_config
from lmmrec_cli.console import SILENT, Progress
from lmmrec_cli.data.dataset import PreparedDataset
from lmmrec_cli.errors import LmmrecError, UsageError
from lmmrec_cli.evaluation import evaluate_split, protocol, score_function
from lmmrec_cli.models.graph import NegativeSampler, epoch_batches
from lmmrec_cli.plugin_setup import NO_PLUGIN, PluginSpec
from lmmrec_cli.runs import (
    BEST_FILE,
    CHECKPOINT_FILE,
    CONFIG_FILE,
    LOG_FILE,
    METRICS_FILE,
    PER_USER_TEST_FILE,
    load_tensors,
)
from lmmrec_cli.workspace import ArtifactRef, Workspace, atomic_output, atomic_write_json


class NonFiniteLoss(LmmrecError):
    """The loss became NaN or infinite, or diverged; the last good checkpoint is kept."""


DIVERGED_LOSS = 1e8
"""A total loss beyond this has diverged (weights blown up, e.g. ``--lr 1e9``): every objective
here is a mean BPR / InfoNCE term of order 1–10 plus small regularisers, so a legitimate loss
stays many orders of magnitude below; the run stops as it does on NaN."""


class StopRun(Exception):
    """Raised by an ``on_validation`` hook to end a run early without publishing it (a tuner's
    pruned trial): a truncated run must never be found later as the finished run of its key,
    so its staging directory is removed."""


# -- training ------------------------------------------------------------------------------


@dataclass
class TrainResult:
    ref: ArtifactRef
    reused: bool
    resumed_from_epoch: int | None
    metrics: dict[str, Any]


@dataclass
class _EarlyStop:
    best: float = -math.inf
    best_epoch: int = 0
    bad_evals: int = 0


@dataclass
class EpochRecord:
    epoch: int
    losses: dict[str, float]
    seconds: float
    valid: dict[str, float] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        out = {"epoch": self.epoch, "loss": self.losses, "time_s": round(self.seconds, 4)}
        if self.valid is not None:
            out["valid"] = self.valid
        out.update(self.extra)
        return out


EpochCallback = Callable[[EpochRecord], None]
ValidationHook = Callable[[int, dict[str, float]], None]
"""Called with (epoch, validation metrics) after each periodic validation; may raise StopRun."""


def _rng_state(generator: torch.Generator) -> dict[str, Any]:
    # numpy's state is a tuple (name, uint32 key array, position, has_gauss, cached gaussian):
    # stored as a tensor and plain numbers, so that weights_only=True loads it.
    kind, keys, position, has_gauss, cached = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "sampler": generator.get_state(),
             "numpy": {"kind": str(kind), "keys": torch.from_numpy(keys.astype(np.int64)),
                       "position": int(position), "has_gauss": int(has_gauss), "cached": float(cached)}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any], generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"].cpu())
    generator.set_state(state["sampler"].cpu())
    numpy_state = state["numpy"]
    np.random.set_state((numpy_state["kind"], numpy_state["keys"].cpu().numpy().astype(np.uint32),
                         numpy_state["position"], numpy_state["has_gauss"], numpy_state["cached"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def _save(obj: Any, path: Path) -> None:
    with atomic_output(path) as tmp:
        torch.save(obj, tmp)


def _state_copy(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def train(
    workspace: Workspace,
    *,
    dataset: str,
    model: str,
    model_settings: Any | None = None,
    config: TrainConfig | None = None,
    plugin: PluginSpec = NO_PLUGIN,
    name: str | None = None,
    resume: bool = False,
    restart: bool = False,
    progress: Progress = SILENT,
    callbacks: list[EpochCallback] | None = None,
    on_validation: ValidationHook | None = None,
    evaluate_test: bool = True,
    lineage: dict[str, Any] | None = None,
) -> TrainResult:
    """Train ``model`` on ``dataset`` and evaluate it; see the module docstring.

    Args:
        model_settings: the model's Config instance (default: its defaults).
        resume: continue an interrupted run of the same version from its last checkpoint.
        restart: discard an interrupted run of the same version and start again.
        callbacks: called after every epoch with its record (tests interrupt runs here).
        on_validation: called after each periodic validation (a tuner reports to its pruner).
        evaluate_test: False = validation only (tuning): the test split is never read and the
            run gets its own version; a finished full run of the same settings is reused.
        lineage: extra manifest entries linking the run to what asked for it (a study).
    """
    cls = model_class(model)
    config = config or train_config(cls.train_defaults)
    config.validate()
    settings = model_settings if model_settings is not None else cls.Config()
    device = resolve_device(config.device)
    data = PreparedDataset.open(workspace, dataset)
    run_name = name or f"{data.ref.name}-{cls.name}{'' if plugin.name == 'none' else '-' + plugin.name}-s{config.seed}"
    key = {
        "dataset": data.ref.as_parent(),
        "model": cls.name,
        "model_config": dataclasses.asdict(settings),
        "train": config.result_key(),
        "device_type": device.type,
        "plugin": {"name": plugin.name, "settings": plugin.settings},
    }
    if not evaluate_test:
        full = workspace.build("runs", run_name, key=key, parents=[data.ref, *plugin.parents])
        found = workspace.find("runs", run_name, full.version)
        if found is not None:
            metrics = json.loads((found.path / METRICS_FILE).read_text(encoding="utf-8"))
            return TrainResult(found, True, None, metrics)
        key["evaluation"] = "valid-only"
        run_name += "-valid"  # kept apart so `latest` of the ordinary run name stays a tested run
    full_config = {**key, "train": dataclasses.asdict(config), "device": str(device),
                   "model_train_defaults": dict(cls.train_defaults)}
    build = workspace.build("runs", run_name, key=key, settings=full_config, parents=[data.ref, *plugin.parents],
                            resumable=True)
    with build:
        if build.reused:
            metrics = build.ref.read_json(METRICS_FILE)
            return TrainResult(build.ref, True, None, metrics)
        run_dir = build.dir
        checkpoint_path = run_dir / CHECKPOINT_FILE
        if build.resumed and not resume and checkpoint_path.is_file() and not restart:
            raise UsageError(
                f"an interrupted run {run_name}@{build.version} exists in {run_dir}",
                hint="pass --resume to continue it, or --restart to discard it",
            )
        continuing = resume and checkpoint_path.is_file()
        if build.resumed and not continuing:  # leftovers of a run killed before its checkpoint
            for stale in run_dir.iterdir():
                if stale.is_file():
                    stale.unlink()
        trainer = _Trainer(data, cls.name, settings, config, plugin, device, run_dir, progress,
                           callbacks or [], on_validation, evaluate_test)
        resumed_from = trainer.load_checkpoint() if continuing else None
        atomic_write_json(run_dir / CONFIG_FILE, full_config)
        try:
            metrics = trainer.fit()
        except StopRun:
            shutil.rmtree(run_dir, ignore_errors=True)
            raise
        build.counts.update({"epochs": metrics["epochs_run"], "best_epoch": metrics["best_epoch"],
                             "test_users": metrics["test_users"]})
        build.extra["metrics"] = metrics["test"] if evaluate_test else {"valid": metrics["valid"]}
        build.extra.update(lineage or {})
    return TrainResult(build.ref, False, resumed_from, metrics)


class _Trainer:
    """One run's loop; owns the device, the optimiser, the RNGs and the files of the run."""

    def __init__(self, data: PreparedDataset, model_name: str, settings: Any, config: TrainConfig,
                 plugin_spec: PluginSpec, device: torch.device, run_dir: Path, progress: Progress,
                 callbacks: list[EpochCallback], on_validation: ValidationHook | None = None,
                 evaluate_test: bool = True) -> None:
        self.data = data
        self.config = config
        self.device = device
        self.run_dir = run_dir
        self.progress = progress
        self.callbacks = callbacks
        self.on_validation = on_validation
        self.evaluate_test = evaluate_test
        if config.threads:
            torch.set_num_threads(config.threads)
        self.graph = dataset_graph(data).to(device)
        self.model = build_model(model_name, settings, self.graph, config.seed).to(device)
        self.plugin = plugin_spec.factory(self.graph, self.model).to(device)
        params = list(self.model.parameters()) + list(self.plugin.parameters())
        self.optimizer = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
        self.generator = torch.Generator().manual_seed(config.seed)
        np.random.seed(config.seed % (2**32))
        if device.type == "cuda":
            torch.cuda.manual_seed_all(config.seed)
        self.sampler = NegativeSampler(self.graph)
        self.start_epoch = 0
        self.early = _EarlyStop()
        self.best_state: dict[str, Any] | None = None
        self.checkpoint_epoch: int | None = None
        self._last_valid = ""

    # -- checkpoints ------------------------------------------------------------------

    def _checkpoint_note(self) -> str:
        if self.checkpoint_epoch is None:
            return "no checkpoint was written yet"
        return f"the last good checkpoint (epoch {self.checkpoint_epoch}) is kept in {self.run_dir}"

    def save_checkpoint(self, epochs_done: int) -> None:
        _save({
            "epoch": epochs_done,
            "model": self.model.state_dict(),
            "plugin": self.plugin.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": _rng_state(self.generator),
            "early_stop": dataclasses.asdict(self.early),
            # the best weights so far travel with the state that refers to them (best.pt may be
            # newer than this checkpoint if the process died between the two writes)
            "best": self.best_state,
        }, self.run_dir / CHECKPOINT_FILE)
        self.checkpoint_epoch = epochs_done

    def load_checkpoint(self) -> int:
        state = load_tensors(self.run_dir / CHECKPOINT_FILE, self.device,
                             hint="pass --restart to discard the interrupted run and train again")
        self.model.load_state_dict(state["model"])
        self.plugin.load_state_dict(state["plugin"])
        self.optimizer.load_state_dict(state["optimizer"])
        _set_rng_state(state["rng"], self.generator)
        self.early = _EarlyStop(**state["early_stop"])
        self.start_epoch = int(state["epoch"])
        self.checkpoint_epoch = self.start_epoch
        self.best_state = state["best"]
        # Lines the killed process logged after its last checkpoint are redone: drop them.
        log = self.run_dir / LOG_FILE
        if log.is_file():
            kept = [line for line in log.read_text(encoding="utf-8").splitlines()
                    if line.strip() and json.loads(line)["epoch"] <= self.start_epoch]
            log.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
        return self.start_epoch

    # -- the loop ---------------------------------------------------------------------

    def _epoch(self, epoch: int, bar: Any) -> dict[str, float]:
        batches = epoch_batches(self.graph, self.sampler, self.config.batch_size, self.generator,
                                self.device)
        steps = len(batches)
        sums: dict[str, torch.Tensor] = {}
        self.model.train()
        self.plugin.train()
        for step, batch in enumerate(batches):
            self.plugin.on_step_begin(epoch * steps + step, steps, epoch)
            emb = self.model.propagate(training=True, ego_offset=self.plugin.input_offset())
            terms = dict(self.model.loss(batch, emb))
            for term_name, value in self.plugin.loss(batch, emb, self.model).items():
                terms[f"{self.plugin.name}.{term_name}" if term_name in terms else term_name] = value
            total = torch.stack([v.reshape(()) for v in terms.values()]).sum()
            total_value = float(total.detach())
            if not math.isfinite(total_value) or abs(total_value) > DIVERGED_LOSS:
                shown = ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in terms.items())
                what = (f"became {total_value}" if not math.isfinite(total_value)
                        else f"diverged to {total_value:.4g} (beyond {DIVERGED_LOSS:g})")
                raise NonFiniteLoss(
                    f"the loss {what} at epoch {epoch + 1}, step {step + 1} ({shown}); "
                    f"stopped; {self._checkpoint_note()}",
                    hint="lower --lr or the loss weights and train again",
                )
            self.optimizer.zero_grad(set_to_none=True)
            total.backward()
            self.optimizer.step()
            for term_name, value in terms.items():
                detached = value.detach().reshape(())
                sums[term_name] = sums[term_name] + detached if term_name in sums else detached
            bar.advance(1)
            if step % 20 == 0 or step == steps - 1:
                shown = " ".join(f"{k} {float(v.detach()):.4g}" for k, v in terms.items())
                bar.set_postfix(f"epoch {epoch + 1} | {shown}{self._last_valid}")
        losses = {k: float(v) / steps for k, v in sums.items()}
        losses["total"] = sum(losses.values())
        return losses

    def _validate(self) -> dict[str, float]:
        result = evaluate_split(self.model, self.plugin, self.data, split="valid",
                                ks=self.config.ks, chunk_size=self.config.eval_chunk,
                                device=self.device)
        return result.summary()

    def fit(self) -> dict[str, Any]:
        config = self.config
        steps = math.ceil(self.graph.train_users.numel() / config.batch_size)
        log_path = self.run_dir / LOG_FILE
        epochs_run = self.start_epoch
        stopped_early = self.early.bad_evals >= config.patience and epochs_run > config.min_epochs
        with self.progress.task("train", total=config.epochs * steps) as bar:
            bar.update(completed=self.start_epoch * steps)
            for epoch in range(self.start_epoch, config.epochs):
                if stopped_early:
                    break
                started = time.perf_counter()
                losses = self._epoch(epoch, bar)
                record = EpochRecord(epoch + 1, losses, time.perf_counter() - started)
                if (epoch + 1) % config.eval_every == 0 or epoch + 1 == config.epochs:
                    record.valid = self._validate()
                    value = record.valid[config.select_metric]
                    if value > self.early.best:
                        self.early = _EarlyStop(value, epoch + 1, 0)
                        self.best_state = {"model": _state_copy(self.model),
                                           "plugin": _state_copy(self.plugin)}
                        _save({**self.best_state, "epoch": epoch + 1}, self.run_dir / BEST_FILE)
                    else:
                        self.early.bad_evals += 1
                    stopped_early = (self.early.bad_evals >= config.patience
                                     and epoch + 1 > config.min_epochs)
                    self._last_valid = (f" | valid {config.select_metric} {value:.4f} "
                                        f"(best {self.early.best:.4f} @ {self.early.best_epoch})")
                    if self.on_validation is not None:
                        self.on_validation(epoch + 1, record.valid)
                with open(log_path, "a", encoding="utf-8") as handle:
                    handle.write(json.dumps(record.as_json(), sort_keys=True) + "\n")
                epochs_run = epoch + 1
                if epochs_run % config.checkpoint_every == 0 or stopped_early or epochs_run == config.epochs:
                    self.save_checkpoint(epochs_run)
                self.start_epoch = epochs_run
                for callback in self.callbacks:
                    callback(record)
        return self._finish(epochs_run, stopped_early)

    def _finish(self, epochs_run: int, stopped_early: bool) -> dict[str, Any]:
        config = self.config
        # the last epoch always validates (epochs >= 1), so there are best weights
        assert self.best_state is not None
        self.model.load_state_dict(self.best_state["model"])
        self.plugin.load_state_dict(self.best_state["plugin"])
        valid = evaluate_split(self.model, self.plugin, self.data, split="valid", ks=config.ks,
                               chunk_size=config.eval_chunk, device=self.device)
        test = None
        if self.evaluate_test:
            test = evaluate_split(self.model, self.plugin, self.data, split="test",
                                  mask_valid=config.mask_valid, ks=config.ks,
                                  chunk_size=config.eval_chunk, device=self.device,
                                  progress=self.progress)
        _, emb = score_function(self.model, self.plugin)
        for filename, array in (("users.npy", emb.users), ("items.npy", emb.items)):
            with atomic_output(self.run_dir / filename) as tmp, open(tmp, "wb") as handle:
                np.save(handle, array.detach().cpu().numpy())
        if test is not None:
            with atomic_output(self.run_dir / PER_USER_TEST_FILE) as tmp, open(tmp, "wb") as handle:
                test.to_npz(handle)
        metrics = {
            "test": test.summary() if test is not None else None,
            "valid": valid.summary(),
            "protocol": protocol("test" if test is not None else "valid", config.mask_valid, config.ks),
            "best_epoch": self.early.best_epoch or epochs_run,
            "epochs_run": epochs_run,
            "stopped_early": stopped_early,
            "test_users": int(len(test.users)) if test is not None else 0,
            "device": str(self.device),
        }
        atomic_write_json(self.run_dir / METRICS_FILE, metrics)
        return metrics
