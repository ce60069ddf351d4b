"""Validation-only hyperparameter search with Optuna (``lmmrec tune``).

A *study* searches one (dataset, model, plugin) cell. Its space is the ranges each Config
declares beside its settings (:func:`lmmrec_cli.config.tunable`: the trainer's ``lr``, the
model's and the plugin's own), optionally overridden or narrowed by a ``--space`` file. Each
trial is an ordinary training run with ``evaluate_test=False``: the objective is the validation
metric ``train --select`` uses, the test split is never read, and a trial whose settings equal a
finished run's reuses it. Every periodic validation is reported to Optuna's median pruner, which
stops hopeless trials (their truncated runs are never published) — but never before the epoch at
which the trainer's own early stopping could first have ended the run (:func:`prune_warmup_epochs`):
a method whose validation curve rises late is judged by the same patience as in ``train``, not by
its first validation.

The study store is Optuna's RDB storage: by default one SQLite file per workspace
(``studies/optuna.db``); ``--storage postgresql://...`` shares one study between processes and
machines. Several processes may work on one study: a trial number is handed out by the database,
and a process that finds ``trials`` trials already counted (finished, pruned, failed by their
settings, or running) stops, so together they run exactly ``trials``. A process killed with -9
leaves its trial RUNNING; the next process marks such trials FAIL (at once when the owner was a
dead process on this host, after ``STALE_AFTER_S`` without a sign of life otherwise) and the
study continues up to ``trials``.

``best_seeds`` retrains the best settings over seeds as ordinary runs, each tested once, with
the study's budget written into the runs' manifests for ``report``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmmrec_cli.config import Range, TrainConfig, search_ranges, train_config
from lmmrec_cli.errors import UsageError
from lmmrec_cli.workspace import Workspace, atomic_output, atomic_write_json

STUDIES_DIR = "studies"
DEFAULT_DB = "optuna.db"
SUMMARY_FILE = "summary.json"
STALE_AFTER_S = 600.0
"""A RUNNING trial of another host with no sign of life for this long is marked FAIL."""
ALIVE_EVERY_S = 30.0
SECTIONS = ("train", "model", "plugin")


# -- search spaces -------------------------------------------------------------------------


@dataclass
class Space:
    """``section.setting`` → Range (searched) or a fixed value (from the space file)."""

    ranges: dict[str, Range] = field(default_factory=dict)
    fixed: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, str]:
        out = {name: r.describe() for name, r in self.ranges.items()}
        out.update({name: f"= {value}" for name, value in self.fixed.items()})
        return out


def _config_classes(model: str, plugin: str) -> dict[str, type | None]:
    from lmmrec_cli.assembly import model_class
    from lmmrec_cli.plugin_setup import plugin_class

    plugin_cls = plugin_class(plugin)
    return {"train": TrainConfig, "model": model_class(model).Config,
            "plugin": plugin_cls.Config if plugin != "none" else None}


def _field_types(cls: type) -> dict[str, Any]:
    import typing

    return typing.get_type_hints(cls)


def _numeric_kind(annotation: Any) -> type | None:
    import types
    import typing

    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(annotation) if a is not type(None)]
        annotation = inner[0] if len(inner) == 1 else None
    return annotation if annotation in (int, float) else None


_NOT_SEARCHED = {"seed", "epochs", "eval_every", "patience", "min_epochs", "ks", "select_metric", "mask_valid"}
"""Trainer settings that define the protocol, not the method: never searched."""


def read_space_file(path: Path) -> dict[str, Any]:
    """A ``--space`` file: TOML (``.toml``) or YAML (``.yaml``/``.yml``) with sections
    ``train``, ``model``, ``plugin``; each entry ``{low, high, log}``, a list of choices, or a
    fixed value."""
    if not path.is_file():
        raise UsageError(f"--space {path}: no such file")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() == ".toml":
            try:
                import tomllib
            except ModuleNotFoundError:  # Python 3.10
                import tomli as tomllib  # type: ignore[no-redef]
            data = tomllib.loads(text)
        elif path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            raise UsageError(f"--space {path}: use a .toml or .yaml file")
    except UsageError:
        raise
    except Exception as error:  # tomllib.TOMLDecodeError, yaml.YAMLError: both name the line
        raise UsageError(f"--space {path}: not valid {path.suffix[1:].upper()}: {error}") from None
    if not isinstance(data, dict):
        raise UsageError(f"--space {path}: expected sections train / model / plugin")
    return data


def build_space(model: str, plugin: str, overrides: dict[str, Any] | None = None, *,
                source: str = "--space") -> Space:
    """The declared ranges of the trainer, ``model`` and ``plugin``, with ``overrides`` (a
    parsed space file) applied; every mistake is one :class:`UsageError` naming the entry."""
    from lmmrec_cli.plugin_setup import PLUGIN_CLASSES

    classes = _config_classes(model, plugin)
    space = Space()
    for section, cls in classes.items():
        if cls is None:
            continue
        for name, rng in search_ranges(cls).items():
            if not (section == "train" and name in _NOT_SEARCHED):
                space.ranges[f"{section}.{name}"] = rng
    for section, entries in (overrides or {}).items():
        if section not in SECTIONS:
            raise UsageError(f"{source}: unknown section [{section}]", hint="use [train], [model] and [plugin]")
        if not isinstance(entries, dict):
            raise UsageError(f"{source}: [{section}] must be a table of settings")
        cls = classes[section]
        if cls is None and entries:
            raise UsageError(f"{source}: [plugin] settings given but this study has no --plugin")
        types_ = _field_types(cls) if cls is not None else {}
        owner = {"train": "the trainer", "model": f"model {model}", "plugin": f"plugin {plugin}"}[section]
        for name, value in entries.items():
            label = f"{source} [{section}] {name}"
            if name not in types_:
                others = [p for p, c in PLUGIN_CLASSES.items()
                          if p not in ("none", plugin) and name in {f.name for f in dataclasses.fields(c.Config)}]
                if section == "plugin" and others:
                    raise UsageError(f"{label}: a setting of plugin {', '.join(others)}, not of {plugin}",
                                     hint="a space file tunes the study's own plugin; remove the entry")
                raise UsageError(f"{label}: {owner} has no setting {name!r}",
                                 hint=f"its settings: {', '.join(sorted(types_))}")
            if section == "train" and name in _NOT_SEARCHED:
                raise UsageError(f"{label}: the protocol setting {name} is not searched",
                                 hint=f"pass --{name.replace('_', '-')} to `lmmrec tune` instead")
            key = f"{section}.{name}"
            kind = _numeric_kind(types_[name])
            if isinstance(value, dict):
                space.ranges[key] = _checked_range(label, value, kind)
                space.fixed.pop(key, None)
            elif isinstance(value, list):
                if not value:
                    raise UsageError(f"{label}: an empty list of choices")
                space.ranges[key] = Range(choices=tuple(value))
                space.fixed.pop(key, None)
            else:
                space.fixed[key] = value
                space.ranges.pop(key, None)
    return space


def _checked_range(label: str, value: dict[str, Any], kind: type | None) -> Range:
    unknown = set(value) - {"low", "high", "log"}
    if unknown:
        raise UsageError(f"{label}: unknown key(s) {', '.join(sorted(unknown))}", hint="use low, high, log")
    if "low" not in value or "high" not in value:
        raise UsageError(f"{label}: a range needs low and high")
    if kind is None:
        raise UsageError(f"{label}: not a numeric setting; give a list of choices or a value")
    try:
        low, high = float(value["low"]), float(value["high"])
    except (TypeError, ValueError):
        raise UsageError(f"{label}: low and high must be numbers") from None
    log = bool(value.get("log", False))
    if low > high:
        raise UsageError(f"{label}: inverted range (low {low:g} > high {high:g})")
    if low == high:
        raise UsageError(f"{label}: empty range (low = high = {low:g})", hint="give a fixed value instead")
    if log and low <= 0:
        raise UsageError(f"{label}: a log-scale range needs low > 0 (got {low:g})")
    if kind is int and (low != int(low) or high != int(high)):
        raise UsageError(f"{label}: an integer setting needs integer bounds")
    return Range(low, high, log)


def suggest(trial: Any, space: Space, kinds: dict[str, type | None]) -> dict[str, Any]:
    """One point of ``space`` drawn by the trial (fixed values included)."""
    values: dict[str, Any] = dict(space.fixed)
    for key, rng in space.ranges.items():
        if rng.choices:
            values[key] = trial.suggest_categorical(key, list(rng.choices))
        elif kinds.get(key) is int:
            values[key] = trial.suggest_int(key, int(rng.low), int(rng.high), log=rng.log)
        else:
            values[key] = trial.suggest_float(key, float(rng.low), float(rng.high), log=rng.log)
    return values


def split_params(values: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
    for key, value in values.items():
        section, _, name = key.partition(".")
        out[section][name] = value
    return out


# -- storage -------------------------------------------------------------------------------


def default_storage_url(workspace: Workspace) -> str:
    return f"sqlite:///{workspace.root / STUDIES_DIR / DEFAULT_DB}"


def open_storage(url: str) -> Any:
    """Optuna's RDB storage for ``url``; an unusable URL is one clear line."""

    engine: dict[str, Any] = {}
    if url.startswith("sqlite"):
        engine["connect_args"] = {"timeout": 120}  # concurrent writers wait instead of failing
    elif url.startswith("postgres"):
        engine["connect_args"] = {"connect_timeout": 10}
    try:
        return _create_tables_once(url, engine)
    except ImportError as error:  # Optuna re-raises the driver's ModuleNotFoundError as ImportError
        missing = getattr(error.__cause__, "name", None) or "its driver"
        raise UsageError(f"--storage {_masked(url)}: the database driver is missing ({missing})",
                         hint="pip install 'lmmrec[postgres]'") from None
    except Exception as error:  # sqlalchemy ArgumentError / OperationalError: bad URL, no server
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UsageError(f"--storage {_masked(url)}: cannot open the study store: {first}",
                         hint="check the URL, that the server runs and accepts this user") from None


def _create_tables_once(url: str, engine: dict[str, Any]) -> Any:
    """Two processes opening a new store at once both try to create its tables (the second
    fails on a UNIQUE constraint); a lock beside a SQLite file, retries elsewhere, settle it."""
    import optuna
    from filelock import FileLock

    if url.startswith("sqlite:///"):
        db = Path(url.removeprefix("sqlite:///"))
        with FileLock(str(db.parent / f".{db.name}.lock")):
            return optuna.storages.RDBStorage(url, engine_kwargs=engine)
    for attempt in range(3):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine)
        except Exception as error:
            racing = any(word in str(error).lower() for word in ("unique", "already exists", "duplicate"))
            if not racing or attempt == 2:
                raise
            time.sleep(0.5 + attempt)
    raise AssertionError("unreachable")


def _masked(url: str) -> str:
    """The URL with any password replaced (URLs are echoed in errors and summaries)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


# -- the study -----------------------------------------------------------------------------


@dataclass
class TuneResult:
    study: str
    storage: str
    identity: dict[str, Any]
    summary: dict[str, Any]
    ran: int
    folder: Path
    seed_runs: list[dict[str, Any]] = field(default_factory=list)


def study_identity(dataset_ref: Any, model: str, plugin: str, embeddings: Any, config: TrainConfig) -> dict[str, Any]:
    """What a study optimises: a study name may only be reused for the same cell."""
    protocol = {k: v for k, v in config.result_key().items() if k not in ("lr", "seed")}
    identity = {"dataset": dataset_ref.label, "model": model, "plugin": plugin,
                "embeddings": embeddings.label if embeddings is not None else None,
                "metric": config.select_metric, "protocol": protocol}
    return json.loads(json.dumps(identity))  # as the store gives it back (tuples become lists)


class _Heartbeat:
    """Writes the running trial's ``alive`` time every ``ALIVE_EVERY_S`` from a thread, so
    processes on other hosts can tell a slow trial from a dead one (``fail_stale_trials``)."""

    def __init__(self, trial: Any) -> None:
        self.trial = trial
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self) -> None:
        while not self.stop.wait(ALIVE_EVERY_S):
            try:
                self.trial.set_user_attr("alive", time.time())
            except Exception:  # the store is briefly unreachable or the trial was failed: keep training
                continue

    def __enter__(self) -> _Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        self.thread.join()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fail_stale_trials(study: Any, now: float | None = None) -> list[int]:
    """Mark RUNNING trials whose process is gone as FAIL (a kill -9 leaves them RUNNING)."""
    from optuna.trial import TrialState

    now = time.time() if now is None else now
    host = socket.gethostname()
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        attrs = trial.user_attrs
        if attrs.get("host") == host and "pid" in attrs:
            stale = not _pid_alive(int(attrs["pid"]))
        else:
            # A trial another process has just asked for carries no owner yet: its start time is
            # its sign of life until the owner writes one.
            started = trial.datetime_start.timestamp() if trial.datetime_start else 0.0
            stale = now - float(attrs.get("alive", started)) > STALE_AFTER_S
        if stale:
            try:
                study._storage.set_trial_user_attr(trial._trial_id, "error", None)
                study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
                failed.append(trial.number)
            except Exception:  # another process failed it first
                continue
    return failed


def _counted(trial: Any) -> bool:
    """Trials that use up the budget: finished, pruned, running, or failed by their settings
    (a diverging loss) — not those a killed process left behind."""
    from optuna.trial import TrialState

    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING):
        return True
    return trial.state == TrialState.FAIL and bool(trial.user_attrs.get("error"))


def _kinds(model: str, plugin: str) -> dict[str, type | None]:
    out: dict[str, type | None] = {}
    for section, cls in _config_classes(model, plugin).items():
        if cls is not None:
            for name, annotation in _field_types(cls).items():
                out[f"{section}.{name}"] = _numeric_kind(annotation)
    return out


def tune(
    workspace: Workspace,
    *,
    dataset: str,
    model: str,
    plugin: str = "none",
    embeddings: str | None = None,
    trials: int,
    study: str | None = None,
    storage: str | None = None,
    space: dict[str, Any] | None = None,
    space_source: str = "--space",
    timeout: float | None = None,
    seed: int = 0,
    config: TrainConfig | None = None,
    model_params: dict[str, str] | None = None,
    plugin_params: dict[str, str] | None = None,
    prune: bool = True,
    startup_trials: int = 5,
    prune_warmup: int | None = None,
    best_seeds: Iterable[int] = (),
    run_name: str | None = None,
    on_trial: Any = None,
) -> TuneResult:
    """Run the study up to ``trials`` trials in total (see the module docstring)."""
    import optuna
    from optuna.trial import TrialState

    from lmmrec_cli.assembly import model_class, model_config
    from lmmrec_cli.plugin_setup import plugin_spec

    if trials < 1:
        raise UsageError("--trials must be at least 1")
    if prune_warmup is not None and prune_warmup < 0:
        raise UsageError(f"--prune-warmup {prune_warmup}: give 0 or more epochs")
    the_space = build_space(model, plugin, space, source=space_source)
    config = config or train_config(model_class(model).train_defaults)
    config = dataclasses.replace(config, seed=seed)
    config.validate()
    model_settings = model_config(model, model_params)  # validates the name and fixed settings
    spec = plugin_spec(workspace, plugin, embeddings=embeddings, overrides=plugin_params)
    dataset_ref = workspace.resolve("datasets", dataset)
    embeddings_ref = (workspace.resolve("embeddings", embeddings)
                      if embeddings is not None and spec.parents else None)
    kinds = _kinds(model, plugin)
    identity = study_identity(dataset_ref, model, plugin, embeddings_ref, config)
    name = study or f"{dataset_ref.name}-{model}-{plugin}"
    url = storage or default_storage_url(workspace)
    if storage is None:
        (workspace.root / STUDIES_DIR).mkdir(parents=True, exist_ok=True)
    store = open_storage(url)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    existing = {s.study_name for s in optuna.get_all_study_summaries(store, include_best_trial=False)}
    sampler = optuna.samplers.TPESampler(seed=seed)
    warmup = prune_warmup_epochs(config) if prune_warmup is None else prune_warmup
    pruner = (optuna.pruners.MedianPruner(n_startup_trials=startup_trials, n_warmup_steps=warmup) if prune
              else optuna.pruners.NopPruner())
    the_study = optuna.create_study(storage=store, study_name=name, direction="maximize",
                                    sampler=sampler, pruner=pruner, load_if_exists=True)
    claim_identity(the_study, name, identity)  # loading an existing study above wrote nothing
    if name not in existing:
        defaults = default_point(the_space, model_settings, spec, config)
        if defaults:  # trial 0 measures the declared defaults: the tuned value is never below them
            # (skip_if_exists: a process racing the creator does not queue it again, short of a tie)
            the_study.enqueue_trial(defaults, user_attrs={"defaults": True}, skip_if_exists=True)
    the_study.set_user_attr("fixed", the_space.fixed)
    the_study.set_user_attr("pruning", {"startup_trials": startup_trials, "warmup_epochs": warmup} if prune else None)
    fail_stale_trials(the_study)

    folder = workspace.root / STUDIES_DIR / name
    started = time.monotonic()
    ran = 0
    while timeout is None or time.monotonic() - started < timeout:
        if sum(_counted(t) for t in the_study.get_trials(deepcopy=False)) >= trials:
            break
        trial = the_study.ask()
        try:
            trial.set_user_attr("host", socket.gethostname())
            trial.set_user_attr("pid", os.getpid())
            trial.set_user_attr("alive", time.time())
        except (RuntimeError, ValueError) as error:  # another process declared it stale meanwhile
            print(f"trial {trial.number}: given up before it started ({error})", file=sys.stderr)
            continue
        ahead = [t for t in the_study.get_trials(deepcopy=False) if t.number < trial.number and _counted(t)]
        if len(ahead) >= trials:  # another process took the last slot between our count and ask
            trial.set_user_attr("surplus", True)
            the_study.tell(trial, state=TrialState.FAIL)
            break
        # Each trial draws from its own seeded stream: every process starts from --seed, so a rerun
        # after a kill or a second worker on the study would otherwise propose the same settings again.
        the_study.sampler = optuna.samplers.TPESampler(seed=seed + trial.number)
        values = suggest(trial, the_space, kinds)
        with _Heartbeat(trial):
            state, value = _run_trial(workspace, trial, values, dataset=f"{dataset_ref.name}@{dataset_ref.version}",
                                      model=model, model_settings=model_settings, plugin=plugin,
                                      embeddings=embeddings, plugin_params=plugin_params, config=config, study=name,
                                      prune=prune)
        try:
            if state == TrialState.COMPLETE:
                the_study.tell(trial, value)
            else:
                the_study.tell(trial, state=state)
        except (RuntimeError, ValueError) as error:  # another process declared it stale meanwhile
            print(f"trial {trial.number}: result not recorded ({error})", file=sys.stderr)
        ran += 1
        if on_trial is not None:
            on_trial(trial.number, state.name, value)
    seeds = list(best_seeds)
    if seeds:  # every seed must retrain the same best trial: let other processes' trials finish
        wait_for_running(the_study)
    summary = write_summary(the_study, folder, url, identity, the_space)
    result = TuneResult(name, _masked(url), identity, summary, ran, folder)
    if seeds:
        result.seed_runs = retrain_best(workspace, the_study, summary, seeds,
                                        dataset=f"{dataset_ref.name}@{dataset_ref.version}",
                                        model=model, model_settings=model_settings, plugin=plugin,
                                        embeddings=embeddings, plugin_params=plugin_params, config=config,
                                        run_name=run_name)
    return result


def prune_warmup_epochs(config: TrainConfig) -> int:
    """The first epoch at which ``train``'s early stopping could end a run: ``patience``
    validations without improvement after the first, and past ``min_epochs``. The pruner may
    stop a trial from this epoch on (Optuna prunes from ``step == n_warmup_steps``)."""
    return max(config.min_epochs + 1, config.eval_every * (config.patience + 1))


def default_point(space: Space, model_settings: Any, spec: Any, config: TrainConfig) -> dict[str, Any]:
    """The searched settings at their current values (defaults and fixed --param values),
    where they lie in the searched range; a None default (decided by the model) is left out."""
    sources = {"train": config, "model": model_settings,
               "plugin": _plugin_config_of(spec)}
    point = {}
    for key, rng in space.ranges.items():
        section, _, name = key.partition(".")
        value = getattr(sources[section], name, None) if sources[section] is not None else None
        if value is None:
            continue
        inside = value in rng.choices if rng.choices else rng.low <= value <= rng.high
        if inside:
            point[key] = value
    return point


def _plugin_config_of(spec: Any) -> Any:
    from lmmrec_cli.plugin_setup import plugin_class

    if spec.name == "none":
        return None
    return plugin_class(spec.name).Config(**spec.settings["config"])


def wait_for_running(study: Any, poll_s: float = 5.0) -> None:
    """Block until the study has no RUNNING trial (stale ones are failed on the way)."""
    from optuna.trial import TrialState

    told = False
    while True:
        fail_stale_trials(study)
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if not running:
            return
        if not told:
            print(f"waiting for {len(running)} running trial(s) of other processes before retraining the best",
                  file=sys.stderr)
            told = True
        time.sleep(poll_s)


def claim_identity(study: Any, name: str, identity: dict[str, Any]) -> None:
    """Mark a study as this cell's, or refuse it if it is another's. No waiting on another
    process: a study without an identity and without trials (just created, here or by a process
    racing this one; the identity is written before the first trial is queued) is claimed by
    writing ours and reading it back. Processes of the same cell racing all go on (they write
    the same value). Of two different cells racing, the one whose write is replaced before its
    read-back is refused; a write landing after the other's read-back is not caught (a window
    of one database round trip, only for two cells given one study name at the same instant)."""
    other = study.user_attrs.get("identity")
    if other is None and not study.get_trials(deepcopy=False):
        study.set_user_attr("identity", identity)
        other = study.user_attrs.get("identity")
    if other != identity:
        raise UsageError(
            f"study {name!r} exists for {_cell(other)}, not {_cell(identity)}",
            hint="pick another --study name (studies compare like with like)")


def _cell(identity: dict[str, Any] | None) -> str:
    if not identity:
        return "an unknown cell (not made by lmmrec tune)"
    plugin = "" if identity.get("plugin") in (None, "none") else f"+{identity['plugin']}"
    return f"{identity.get('model')}{plugin} on {identity.get('dataset')}"


def _settings_for(values: dict[str, Any], *, model: str, model_settings: Any, plugin: str,
                  plugin_params: dict[str, str] | None, config: TrainConfig) -> tuple[TrainConfig, Any, dict[str, str]]:
    parts = split_params(values)
    train_config = dataclasses.replace(config, **parts["train"])
    settings = dataclasses.replace(model_settings, **parts["model"])
    plugin_overrides = {**(plugin_params or {}), **{k: str(v) for k, v in parts["plugin"].items()}}
    return train_config, settings, plugin_overrides


def _run_trial(workspace: Workspace, trial: Any, values: dict[str, Any], *, dataset: str, model: str,
               model_settings: Any, plugin: str, embeddings: str | None, plugin_params: dict[str, str] | None,
               config: TrainConfig, study: str, prune: bool) -> tuple[Any, float | None]:
    from optuna.trial import TrialState

    from lmmrec_cli.errors import LmmrecError
    from lmmrec_cli.plugin_setup import plugin_spec
    from lmmrec_cli.train import StopRun, train

    train_config, settings, plugin_overrides = _settings_for(
        values, model=model, model_settings=model_settings, plugin=plugin, plugin_params=plugin_params,
        config=config)
    spec = plugin_spec(workspace, plugin, embeddings=embeddings, overrides=plugin_overrides)
    def report(epoch: int, valid: dict[str, float]) -> None:
        trial.report(valid[config.select_metric], epoch)
        if prune and trial.should_prune():
            raise StopRun(f"pruned at epoch {epoch}")

    try:
        result = train(workspace, dataset=dataset, model=model, model_settings=settings, config=train_config,
                       plugin=spec, resume=True, on_validation=report, evaluate_test=False,
                       lineage={"study": {"name": study, "trial": trial.number}})
    except StopRun:
        return TrialState.PRUNED, None
    except LmmrecError as error:  # a diverging loss or a rejected combination: this trial's fault
        trial.set_user_attr("error", error.one_line())
        return TrialState.FAIL, None
    trial.set_user_attr("run", result.ref.label)
    trial.set_user_attr("reused", result.reused)
    return TrialState.COMPLETE, float(result.metrics["valid"][config.select_metric])


def study_counts(study: Any) -> dict[str, Any]:
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    counts = {s.name.lower(): 0 for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL,
                                           TrialState.RUNNING)}
    wall = 0.0
    for t in trials:
        if t.user_attrs.get("surplus"):
            continue
        if t.state.name.lower() in counts:
            counts[t.state.name.lower()] += 1
        if t.datetime_start and t.datetime_complete:
            wall += (t.datetime_complete - t.datetime_start).total_seconds()
    counts["trial_seconds"] = round(wall, 1)
    return counts


def write_summary(study: Any, folder: Path, url: str, identity: dict[str, Any], space: Space) -> dict[str, Any]:
    """``studies/<name>/summary.json`` and the plots, rewritten after every session."""
    from optuna.trial import TrialState

    counts = study_counts(study)
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    best = max(complete, key=lambda t: t.value) if complete else None
    summary = {
        "study": study.study_name,
        "storage": _masked(url),
        "identity": identity,
        "space": space.describe(),
        "counts": counts,
        "pruning": study.user_attrs.get("pruning"),
        "best": None if best is None else {
            "trial": best.number, "value": best.value, "params": best.params,
            "run": best.user_attrs.get("run"),
        },
    }
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(folder / SUMMARY_FILE, summary)
    summary["plots"] = write_plots(study, folder)
    return summary


def write_plots(study: Any, folder: Path) -> list[str]:
    """Optimisation history and parameter importances (PNG) — when there is enough to draw."""
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.trial import TrialState
    from optuna.visualization import matplotlib as vis

    written = []
    n_complete = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    plots = [("history.png", vis.plot_optimization_history, 1), ("importances.png", vis.plot_param_importances, 2)]
    for filename, draw, needed in plots:
        if n_complete < needed:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Optuna marks its matplotlib backend experimental
            try:
                ax = draw(study)
            except (ValueError, RuntimeError):  # e.g. importances of a space with one value
                continue
        figure = ax.figure if hasattr(ax, "figure") else ax[0].figure
        figure.tight_layout()
        with atomic_output(folder / filename) as tmp:
            figure.savefig(tmp, format="png", dpi=120)
        plt.close(figure)
        written.append(filename)
    return written


def retrain_best(workspace: Workspace, study: Any, summary: dict[str, Any], seeds: list[int], *, dataset: str,
                 model: str, model_settings: Any, plugin: str, embeddings: str | None,
                 plugin_params: dict[str, str] | None, config: TrainConfig,
                 run_name: str | None = None) -> list[dict[str, Any]]:
    """The best trial's settings trained over ``seeds`` as ordinary runs (``RUN_NAME-sSEED``,
    default train's own names), each tested once."""
    from lmmrec_cli.plugin_setup import plugin_spec
    from lmmrec_cli.train import train

    if summary["best"] is None:
        raise UsageError(f"study {study.study_name} has no finished trial to retrain",
                         hint="run more --trials first")
    best = study.best_trial
    values = {**build_fixed(study), **best.params}
    train_config, settings, plugin_overrides = _settings_for(
        values, model=model, model_settings=model_settings, plugin=plugin, plugin_params=plugin_params,
        config=config)
    spec = plugin_spec(workspace, plugin, embeddings=embeddings, overrides=plugin_overrides)
    tuned = {"study": study.study_name, "best_trial": best.number, "valid": best.value, "params": best.params,
             "budget": summary["counts"], "pruning": summary.get("pruning")}
    out = []
    for seed in seeds:
        result = train(workspace, dataset=dataset, model=model, model_settings=settings,
                       config=dataclasses.replace(train_config, seed=seed), plugin=spec, resume=True,
                       name=f"{run_name}-s{seed}" if run_name else None, lineage={"tuned": tuned})
        out.append({"seed": seed, "run": result.ref.label, "reused": result.reused, "test": result.metrics["test"]})
    return out


def build_fixed(study: Any) -> dict[str, Any]:
    """Values a space file fixed (stored with the study so retraining uses them too)."""
    return dict(study.user_attrs.get("fixed", {}))


# -- listing ---------------------------------------------------------------------------------


def list_studies(workspace: Workspace, storage: str | None = None) -> list[dict[str, Any]]:
    """Every study in the store (default: the workspace's SQLite file, if it exists), with its
    best value and trial counts; nothing is created when there is no store."""
    url = storage or default_storage_url(workspace)
    if storage is None and not (workspace.root / STUDIES_DIR / DEFAULT_DB).is_file():
        return []
    import optuna

    store = open_storage(url)
    out = []
    for s in optuna.get_all_study_summaries(store, include_best_trial=True):
        loaded = optuna.load_study(study_name=s.study_name, storage=store)
        counts = study_counts(loaded)
        out.append({"study": s.study_name, "cell": _cell(s.user_attrs.get("identity")),
                    "best_value": s.best_trial.value if s.best_trial else None,
                    "best_params": s.best_trial.params if s.best_trial else None, **counts})
    return out


def summary_json(result: TuneResult) -> str:
    return json.dumps({"study": result.study, "storage": result.storage, "ran": result.ran,
                       **{k: v for k, v in result.summary.items() if k != "study"},
                       "seed_runs": result.seed_runs}, indent=2, sort_keys=True, default=str)
