"""`lmmrec tune`: validation only, concurrent studies (SQLite and a real PostgreSQL), kill -9 and
resume, pruning, search-space errors."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from lmmrec_cli.config import TrainConfig, train_config
from lmmrec_cli.data.dataset import Interactions
from lmmrec_cli.tune import default_storage_url, open_storage, prune_warmup_epochs, tune
from lmmrec_cli.workspace import Workspace

FAST = ["--epochs", "2", "--eval-every", "1", "--batch-size", "2048", "--threads", "1", "--device", "cpu"]
FAST_CONFIG = TrainConfig(epochs=2, eval_every=1, batch_size=2048, threads=1, device="cpu")


@pytest.fixture
def ws(demo_workspace: Path, tmp_path: Path) -> Workspace:
    """A fresh workspace with the demo data set (no runs or studies of other tests)."""
    shutil.copytree(demo_workspace / "datasets", tmp_path / "ws" / "datasets")
    return Workspace(tmp_path / "ws")


def _tune_process(ws: Workspace, *args: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1])}
    return subprocess.Popen([sys.executable, "-m", "lmmrec_cli", "tune", "--dataset", "demo", "--workspace",
                             str(ws.root), *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _trials(url: str, study: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=study, storage=open_storage(url)).get_trials(deepcopy=False)


def test_the_test_split_is_never_read_while_tuning(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[str] = []
    original_matrix, original_pairs = Interactions.matrix, Interactions.pairs

    def guarded(original):
        def read(self, split: str, *args, **kwargs):
            if split == "test":
                reads.append(split)
                raise AssertionError("the tuner read the test split")
            return original(self, split, *args, **kwargs)
        return read

    monkeypatch.setattr(Interactions, "matrix", guarded(original_matrix))
    monkeypatch.setattr(Interactions, "pairs", guarded(original_pairs))
    result = tune(ws, dataset="demo", model="lightgcn", trials=3, config=FAST_CONFIG, study="valid-only")
    assert reads == [] and result.summary["counts"]["complete"] == 3
    assert 0 < result.summary["best"]["value"] <= 1
    # the guard is live: the seeded retraining after the search does test once, and trips it
    with pytest.raises(AssertionError, match="test split"):
        tune(ws, dataset="demo", model="lightgcn", trials=3, config=FAST_CONFIG, study="valid-only",
             best_seeds=[0])


def test_best_seeds_are_ordinary_tested_runs_carrying_the_budget(ws: Workspace) -> None:
    result = tune(ws, dataset="demo", model="lightgcn", trials=2, config=FAST_CONFIG, best_seeds=[0, 1])
    assert [r["seed"] for r in result.seed_runs] == [0, 1]
    for run in result.seed_runs:
        ref = ws.resolve("runs", run["run"].removeprefix("runs/"))
        manifest = ref.manifest()
        assert manifest["tuned"]["study"] == result.study and manifest["tuned"]["budget"]["complete"] == 2
        assert set(run["test"]) >= {"recall@20", "ndcg@20"}
    assert (result.folder / "summary.json").is_file() and (result.folder / "history.png").is_file()
    from lmmrec_cli.report import build_report

    report = build_report(ws, [r["run"].removeprefix("runs/") for r in result.seed_runs])
    tuning = next(layout for layout in report.layouts if layout.key == "tuning")
    assert tuning.rows[0][3] == result.study and tuning.rows[0][4] == "2" and "train.lr=" in tuning.rows[0][-1]


def test_a_trial_identical_to_a_finished_run_is_found_not_retrained(ws: Workspace) -> None:
    from lmmrec_cli.train import train

    done = train(ws, dataset="demo", model="lightgcn", config=FAST_CONFIG)  # LightGCN's defaults
    # every searched setting fixed at those defaults (reg's None only through the Python API)
    space = {"train": {"lr": FAST_CONFIG.lr}, "model": {"layers": 3, "reg": None}}
    tune(ws, dataset="demo", model="lightgcn", trials=1, config=FAST_CONFIG, space=space, study="same")
    trial = _trials(default_storage_url(ws), "same")[0]
    assert trial.user_attrs["reused"] is True and trial.user_attrs["run"] == done.ref.label
    assert trial.value == done.metrics["valid"]["recall@20"]


def _tune_with_a_hopeless_third_trial(ws: Workspace, config: TrainConfig, study: str, before=lambda: None,
                                      **options):
    """Two ordinary trials, then a third with lr 1e-7 (an untrained model: hopeless from the first
    validation); ``before`` runs just before the third. Returns the second call's result."""
    space = {"train": {"lr": {"low": 1e-7, "high": 1e-2, "log": True}}, "model": {"layers": 2, "reg": 1e-6}}
    common = dict(dataset="demo", model="lightgcn", config=config, space=space, study=study, startup_trials=2,
                  **options)
    tune(ws, trials=2, **common)
    optuna.load_study(study_name=study, storage=open_storage(default_storage_url(ws))).enqueue_trial(
        {"train.lr": 1e-7})
    before()
    return tune(ws, trials=3, **common)


def test_pruning_stops_a_trial_planted_to_be_hopeless(ws: Workspace) -> None:
    # patience 2 × every epoch: early stopping could first end a run at epoch 3, so may the pruner
    config = TrainConfig(epochs=5, eval_every=1, patience=2, batch_size=2048, threads=1, device="cpu")
    assert prune_warmup_epochs(config) == 3
    staged_before: set[Path] = set()
    result = _tune_with_a_hopeless_third_trial(
        ws, config, "p", before=lambda: staged_before.update((ws.root / "runs").rglob("*")))
    trials = _trials(default_storage_url(ws), "p")
    assert trials[2].params["train.lr"] == pytest.approx(1e-7)
    assert trials[2].state == TrialState.PRUNED
    assert sorted(trials[2].intermediate_values) == [1, 2, 3]  # not before the warm-up, then at once
    assert result.summary["counts"]["pruned"] == 1
    assert result.summary["pruning"] == {"startup_trials": 2, "warmup_epochs": 3}
    # the truncated run was not published (and its staging directory is gone)
    new = {p for p in set((ws.root / "runs").rglob("*")) - staged_before if p.name == "manifest.json"}
    assert new == set()


def test_prune_warmup_zero_prunes_at_the_first_validation(ws: Workspace) -> None:
    config = TrainConfig(epochs=3, eval_every=1, batch_size=2048, threads=1, device="cpu")
    _tune_with_a_hopeless_third_trial(ws, config, "p0", prune_warmup=0)
    hopeless = _trials(default_storage_url(ws), "p0")[2]
    assert hopeless.state == TrialState.PRUNED and list(hopeless.intermediate_values) == [1]


def test_the_default_warmup_is_each_models_earliest_early_stop() -> None:
    from lmmrec_cli.assembly import model_class

    lightgcn = train_config(model_class("lightgcn").train_defaults)  # every 3 epochs, patience 5
    weightedgcl = train_config(model_class("weightedgcl").train_defaults)  # every epoch, patience 10, min 30
    assert prune_warmup_epochs(lightgcn) == 18
    assert prune_warmup_epochs(weightedgcl) == 31


@pytest.mark.slow
def test_two_processes_share_one_sqlite_study(ws: Workspace) -> None:
    procs = [_tune_process(ws, "--trials", "4", "--study", "shared", "--seed", "0", *FAST) for _ in range(2)]
    outputs = [p.communicate(timeout=900) for p in procs]  # 50 s idle; past 300 s at load 12 here
    assert [p.returncode for p in procs] == [0, 0], outputs
    _assert_shared_study(default_storage_url(ws), "shared", 4, ws)


def _assert_shared_study(url: str, name: str, n: int, ws: Workspace) -> None:
    trials = _trials(url, name)
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers))
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == n
    assert all(t.user_attrs.get("surplus") for t in trials if t not in finished)
    # both processes trained (two pids) and the workspace's artifact locks left every run whole
    assert len({t.user_attrs["pid"] for t in finished}) == 2
    for t in finished:
        if t.state == TrialState.COMPLETE:
            ref = ws.resolve("runs", t.user_attrs["run"].removeprefix("runs/"))
            assert ref.manifest()["study"] == {"name": name, "trial": t.number} or t.user_attrs["reused"]
    staging = [p for p in (ws.root / "runs").rglob(".staging/*")]
    assert staging == []


@pytest.mark.slow
def test_kill_9_loses_at_most_the_running_trial_and_a_rerun_continues(ws: Workspace) -> None:
    # No early stop (patience = epochs), and the kill lands within a trial's first epochs: the
    # trial cannot finish between being seen running (at most half done) and the kill.
    slow = ["--epochs", "40", "--eval-every", "1", "--patience", "40", "--batch-size", "2048", "--threads", "1",
            "--device", "cpu", "--no-prune"]
    url = default_storage_url(ws)
    proc = _tune_process(ws, "--trials", "2", "--study", "k", *slow)
    deadline = time.monotonic() + 120
    running: list = []
    while time.monotonic() < deadline and not running:
        time.sleep(0.2)
        try:
            running = [t for t in _trials(url, "k")
                       if t.state == TrialState.RUNNING and 0 < len(t.intermediate_values) <= 20]
        except (KeyError, Exception):  # the study is not created yet
            running = []
    assert running, proc.communicate(timeout=5)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert [t.state for t in _trials(url, "k")][-1] == TrialState.RUNNING  # Optuna leaves it running
    result = tune(ws, dataset="demo", model="lightgcn", trials=2, study="k", config=TrainConfig(
        epochs=40, eval_every=1, patience=40, batch_size=2048, threads=1, device="cpu"), prune=False)
    trials = _trials(url, "k")
    assert running[0].number in [t.number for t in trials if t.state == TrialState.FAIL]
    assert result.summary["counts"]["complete"] == 2


def test_stale_trials_of_dead_or_silent_processes_are_failed_live_ones_kept(tmp_path: Path) -> None:
    from lmmrec_cli.tune import STALE_AFTER_S, fail_stale_trials

    study = optuna.create_study(storage=open_storage(f"sqlite:///{tmp_path / 's.db'}"), study_name="s")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    owners = [(socket.gethostname(), os.getpid(), time.time()),  # this very process: alive
              (socket.gethostname(), dead.pid, time.time()),  # a dead process of this host
              ("elsewhere", 1, time.time()),  # another host, heard from just now
              ("elsewhere", 1, time.time() - STALE_AFTER_S - 1)]  # another host, silent too long
    for host, pid, alive in owners:
        trial = study.ask()
        trial.set_user_attr("host", host)
        trial.set_user_attr("pid", pid)
        trial.set_user_attr("alive", alive)
    study.ask()  # just asked by another process, which has not written its owner yet
    assert fail_stale_trials(study) == [1, 3]
    assert [t.state for t in study.get_trials()] == [TrialState.RUNNING, TrialState.FAIL,
                                                      TrialState.RUNNING, TrialState.FAIL, TrialState.RUNNING]


def test_a_new_study_is_claimed_by_its_cell_and_a_foreign_one_refused(tmp_path: Path) -> None:
    from lmmrec_cli.errors import UsageError
    from lmmrec_cli.tune import claim_identity

    storage = open_storage(f"sqlite:///{tmp_path / 's.db'}")
    bare = optuna.create_study(storage=storage, study_name="bare")  # as a racing creator leaves it
    claim_identity(bare, "bare", {"model": "lightgcn"})
    claim_identity(bare, "bare", {"model": "lightgcn"})  # the same cell joins it
    with pytest.raises(UsageError, match="exists for lightgcn"):
        claim_identity(bare, "bare", {"model": "mf"})
    foreign = optuna.create_study(storage=storage, study_name="foreign")  # made outside lmmrec tune
    foreign.enqueue_trial({"x": 1.0})
    with pytest.raises(UsageError, match="unknown cell"):
        claim_identity(foreign, "foreign", {"model": "lightgcn"})
    assert "identity" not in foreign.user_attrs


# -- PostgreSQL: a real, throwaway server ------------------------------------------------


def _pg_bin() -> Path | None:
    root = Path("/usr/lib/postgresql")
    found = sorted(root.glob("*/bin/initdb")) if root.is_dir() else []
    return found[-1].parent if found else None


def _postgres_unavailable(reason: str) -> None:
    """Skip, saying why — or fail where PostgreSQL was installed for this run (.ci/run sets
    LMMREC_REQUIRE_POSTGRES after a successful install), so CI cannot pass by skipping."""
    if os.environ.get("LMMREC_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"LMMREC_REQUIRE_POSTGRES=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture
def postgres_url():
    """``initdb`` + ``pg_ctl`` on a temporary directory and a free port; stopped afterwards."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _postgres_unavailable("the postgres extra (psycopg) is not installed")
    bin_dir = _pg_bin()
    if bin_dir is None:
        _postgres_unavailable("PostgreSQL is not installed (apt-get install postgresql; .ci/run does it)")
    # not under tmp_path: pytest's root-owned 0700 base directory is closed to the postgres user
    home = Path(tempfile.mkdtemp(prefix="lmmrec-pg-"))
    data = home / "pg"
    data.mkdir()
    as_user: list[str] = []
    if os.geteuid() == 0:  # postgres refuses to run as root
        try:
            import pwd

            pwd.getpwnam("postgres")
        except KeyError:
            _postgres_unavailable("running as root and no 'postgres' user to run the server as")
        shutil.chown(data, "postgres")
        home.chmod(0o755)
        as_user = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run = lambda *cmd: subprocess.run([*as_user, *cmd], check=True, capture_output=True, text=True)  # noqa: E731
    run(str(bin_dir / "initdb"), "-D", str(data), "-U", "tune", "--auth=trust")
    run(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(data / "log"), "-w", "-o",
        f"-p {port} -k {data} -c listen_addresses=127.0.0.1", "start")
    try:
        run(str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "tune", "studies")
        yield f"postgresql://tune@127.0.0.1:{port}/studies"
    finally:
        subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


@pytest.mark.slow
def test_two_processes_share_one_postgresql_study(ws: Workspace, postgres_url: str) -> None:
    procs = [_tune_process(ws, "--trials", "4", "--study", "pg", "--storage", postgres_url, *FAST)
             for _ in range(2)]
    outputs = [p.communicate(timeout=900) for p in procs]  # 50 s idle; past 300 s at load 12 here
    assert [p.returncode for p in procs] == [0, 0], outputs
    _assert_shared_study(postgres_url, "pg", 4, ws)
    assert not (ws.root / "studies" / "optuna.db").exists()  # nothing went to the SQLite default


# -- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize("text, message", [
    ("[model]\nfoo = {low = 1, high = 2}\n", "model lightgcn has no setting 'foo'"),
    ("[model]\nreg = {low = 0.1, high = 0.01, log = true}\n", "inverted range"),
    ("[model]\nreg = {low = 0.1, high = 0.1}\n", "empty range"),
    ("[model]\nreg = {low = 0, high = 0.1, log = true}\n", "log-scale range needs low > 0"),
    ("[plugin]\nkd_weight = {low = 0.1, high = 1}\n", "a setting of plugin rlmrec-con, not of lmmrec"),
    ("[train]\nepochs = [1, 2]\n", "protocol setting epochs is not searched"),
    ("[train\n", "not valid TOML"),
])
def test_space_errors_are_one_line_and_write_nothing(ws: Workspace, tmp_path: Path, runner, text: str,
                                                      message: str) -> None:
    from lmmrec_cli.cli import app

    space = tmp_path / "space.toml"
    space.write_text(text, encoding="utf-8")
    result = runner.invoke(app, ["tune", "-d", "demo", "-P", "lmmrec", "--plugin-param", "use_text=false",
                                 "--trials", "2", "--space", str(space), "-w", str(ws.root)])
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0] and str(space) in lines[0], result.output
    assert not (ws.root / "studies").exists() and not (ws.root / "runs").exists()


def test_a_yaml_or_toml_space_narrows_fixes_and_lists_choices(tmp_path: Path) -> None:
    from lmmrec_cli.tune import build_space, read_space_file

    yaml_file = tmp_path / "space.yaml"
    yaml_file.write_text("train:\n  lr: {low: 0.001, high: 0.01, log: true}\nmodel:\n  layers: [2, 3]\n"
                         "plugin:\n  mcs_weight: 0.5\n", encoding="utf-8")
    toml_file = tmp_path / "space.toml"
    toml_file.write_text("[train]\nlr = {low = 0.001, high = 0.01, log = true}\n[model]\nlayers = [2, 3]\n"
                         "[plugin]\nmcs_weight = 0.5\n", encoding="utf-8")
    for path in (yaml_file, toml_file):
        space = build_space("lightgcn", "lmmrec", read_space_file(path))
        assert (space.ranges["train.lr"].low, space.ranges["train.lr"].high) == (0.001, 0.01)
        assert space.ranges["model.layers"].choices == (2, 3)
        assert space.fixed == {"plugin.mcs_weight": 0.5} and "plugin.mcs_weight" not in space.ranges
        assert space.ranges["plugin.temperature"].log  # declared ranges the file leaves alone stay


def test_unreachable_storage_and_a_study_of_another_cell_are_refused(ws: Workspace, runner) -> None:
    from lmmrec_cli.cli import app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    result = runner.invoke(app, ["tune", "-d", "demo", "--trials", "1", "-w", str(ws.root),
                                 "--storage", f"postgresql://u:secret@127.0.0.1:{port}/x"])
    assert result.exit_code != 0 and "cannot open the study store" in result.output
    assert "secret" not in result.output and not (ws.root / "studies").exists()
    tune(ws, dataset="demo", model="lightgcn", trials=1, config=FAST_CONFIG, study="cell")
    result = runner.invoke(app, ["tune", "-d", "demo", "-m", "mf", "--trials", "2", "--study", "cell",
                                 "-w", str(ws.root), *FAST])
    assert result.exit_code != 0 and "study 'cell' exists for lightgcn" in result.output
    assert len(_trials(default_storage_url(ws), "cell")) == 1


def test_a_resumed_or_second_process_does_not_repeat_the_first_ones_draws(ws: Workspace) -> None:
    # Every process starts its sampler from --seed: a fresh process (a rerun after a kill, a second
    # worker on a shared study) must still propose new settings, not the first process's again.
    space = {"train": {"lr": {"low": 1e-4, "high": 1e-2, "log": True}}, "model": {"layers": 2, "reg": 1e-6}}
    config = TrainConfig(epochs=1, eval_every=1, batch_size=2048, threads=1, device="cpu")
    tune(ws, dataset="demo", model="lightgcn", trials=2, config=config, space=space, study="draws")
    tune(ws, dataset="demo", model="lightgcn", trials=4, config=config, space=space, study="draws")
    lrs = [t.params["train.lr"] for t in _trials(default_storage_url(ws), "draws")]
    assert len(lrs) == 4 and len(set(lrs)) == 4, lrs


def test_a_negative_prune_warmup_is_refused_before_anything_is_written(ws: Workspace) -> None:
    from lmmrec_cli.errors import UsageError

    with pytest.raises(UsageError, match="--prune-warmup -1: give 0 or more epochs"):
        tune(ws, dataset="demo", model="lightgcn", trials=1, prune_warmup=-1)
    assert not (ws.root / "studies").exists()
