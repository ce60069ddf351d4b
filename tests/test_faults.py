"""The fault corpus: things a user (or the machine) can do wrong, each run through the real CLI.

For every case: the exit code (non-zero for a fault; 0 where the command must carry on, e.g.
``status`` over a damaged artifact), no Python traceback, a message that names the file or flag
at fault, ``lmmrec status`` still working afterwards and every ``latest`` pointer unchanged.

Each case starts from a private copy of a small workspace (the demo dataset and a one-epoch
LightGCN run) and builds its fault there. To add a case, append a :class:`Fault` to ``FAULTS``:
``build`` makes the fault and returns the command line (without ``lmmrec``). Faults that need
a resource limit (a full disk) or no power to read past file modes run in a subprocess; all
others run in-process.

``LMMREC_FAULT_TABLE=FILE python -m pytest tests/test_faults.py`` also writes one line per case
(case | exit code | message) to FILE, the table of the issue's closing note.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from lmmrec_cli.cli import app

REPO_ROOT = Path(__file__).resolve().parents[1]
RUN = "demo-lightgcn-s0"
# The base run; a case that retrains with these flags reaches the same run version.
TRAIN_FLAGS = ("-d", "demo", "-m", "lightgcn", "--epochs", "1", "--device", "cpu", "--dim", "8")
LOOSE = ("--min-rating", "0", "--min-user-interactions", "1", "--min-item-interactions", "1")
DISK_LIMIT = 100 * 1024  # what `ulimit -f 100` allows


@dataclass
class Scene:
    """Where a case builds its fault: ``ws`` is its own copy of the base workspace."""

    tmp: Path
    ws: Path

    def file(self, name: str, content: bytes | str) -> Path:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return path

    def artifact(self, kind: str = "runs", name: str = RUN) -> Path:
        return (self.ws / kind / name / "latest").resolve()

    def prepare(self, *args: str | Path) -> list[str]:
        return ["prepare", *map(str, args), "-w", str(self.ws), "-q", *LOOSE]


@dataclass(frozen=True)
class Fault:
    name: str
    build: Callable[[Scene], list[str]]
    # Text the output must contain: the file, flag or cause. A callable gets the scene.
    names: tuple[str | Callable[[Scene], str], ...]
    exit_code: int | None = None  # None: any non-zero
    file_size_limit: int | None = None  # run in a subprocess under this RLIMIT_FSIZE
    no_dac: bool = False  # run in a subprocess that cannot read past file modes, even as root
    xfail: str | None = None
    marks: tuple = field(default_factory=tuple)


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def random_bytes(seed: int, size: int = 4096) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes()


def unreadable(path: Path) -> Path:
    """A file that exists but whose mode lets nobody read it.

    Root reads such a file anyway (CAP_DAC_OVERRIDE): a case using it runs with ``no_dac``, in
    a subprocess without the capabilities that override file modes, so root is refused as any
    user is.
    """
    path.write_text("user,item\nu1,i1\n")
    path.chmod(0)
    return path


_PR_CAPBSET_DROP = 24
_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH = 1, 2


def _drop_dac_capabilities() -> None:
    """In a child before ``exec``: take the mode-overriding capabilities out of the bounding set,
    so the program it runs as root does not get them (a no-op for any other user)."""
    if os.geteuid() != 0:
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH):
        if libc.prctl(_PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) refused")


def dead_url(scene: Scene) -> str:
    """An LLM server URL where nothing listens (a port just bound and released)."""
    import socket

    if not hasattr(scene, "_dead_url"):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            scene._dead_url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"  # type: ignore[attr-defined]
    return scene._dead_url  # type: ignore[attr-defined]


_LLAMA: list = []


def llama_url() -> str:
    """A fake server that answers like llama.cpp's, alive for the rest of the session."""
    if not _LLAMA:
        from tests.fake_openai import FakeOpenAI

        _LLAMA.append(FakeOpenAI.llama_cpp().__enter__())
    return _LLAMA[0].url


def extractive_motivations(scene: Scene) -> str:
    result = CliRunner().invoke(app, ["motivate", "-d", "demo", "-b", "extractive", "-w", str(scene.ws), "-q"])
    assert result.exit_code == 0, result.output
    return "demo"


def recbole_dir(scene: Scene, broken_item: Callable[[Path], object]) -> Path:
    directory = scene.tmp / "rb"
    directory.mkdir()
    rows = [f"u{k % 7}\ti{k % 5}\t5" for k in range(30)]
    (directory / "rb.inter").write_text("user_id:token\titem_id:token\trating:float\n" + "\n".join(rows) + "\n")
    broken_item(directory / "rb.item")
    return directory


def interrupted_run(scene: Scene, *, damage: Callable[[Path], None]) -> None:
    """Turn the base run into one killed mid-training (its files in staging, no manifest)."""
    final = scene.artifact()
    staging = final.parent / ".staging" / final.name
    staging.parent.mkdir(exist_ok=True)
    final.rename(staging)
    (staging / "manifest.json").unlink()
    (final.parent / "latest").unlink()
    damage(staging)


def csv_lines(sep: str = "\n", rows: int = 12) -> str:
    return sep.join(["user,item,rating", *(f"u{k % 4},i{k % 3},5" for k in range(rows))]) + sep


def ratings_csv(value: str) -> str:
    lines = csv_lines().splitlines()
    lines[3] = f"u9,i9,{value}"
    return "\n".join(lines) + "\n"


def _prepare_random(seed: int) -> Fault:
    return Fault(
        f"random bytes as reviews.json (seed {seed})",
        lambda s: s.prepare(s.file("reviews.json", random_bytes(seed))),
        ("reviews.json",),
    )


FAULTS: list[Fault] = [
    # -- raw input files --------------------------------------------------------------------
    *(_prepare_random(seed) for seed in range(6)),
    Fault(
        "CSV with bare CR line endings",
        lambda s: s.prepare(s.file("cr.csv", csv_lines("\r"))),
        ("cr.csv", "line ending"),
    ),
    Fault(
        "CSV with bare CR line endings, --format csv",
        lambda s: s.prepare(s.file("cr.csv", csv_lines("\r")), "--format", "csv"),
        ("cr.csv", "line ending"),
    ),
    Fault(
        "UTF-16 CSV (with BOM)",
        lambda s: s.prepare(s.file("u16.csv", csv_lines().encode("utf-16"))),
        ("u16.csv", "UTF-16"),
    ),
    Fault(
        "UTF-16 CSV, --encoding utf-16",
        lambda s: s.prepare(s.file("u16.csv", csv_lines().encode("utf-16")), "--encoding", "utf-16"),
        ("--encoding", "utf-16"),
    ),
    Fault(
        "header-only CSV",
        lambda s: s.prepare(s.file("head.csv", "user,item,rating\n")),
        ("head.csv", "no data rows"),
    ),
    Fault(
        "binary file with --format csv",
        lambda s: s.prepare(s.file("bin.csv", random_bytes(1)), "--format", "csv"),
        ("bin.csv", "not text"),
    ),
    Fault(
        "binary file with --format jsonl",
        lambda s: s.prepare(s.file("bin.jsonl", random_bytes(2)), "--format", "jsonl"),
        ("bin.jsonl", "not text"),
    ),
    Fault(
        "rating inf is a bad line (--strict)",
        lambda s: s.prepare(s.file("inf.csv", ratings_csv("inf")), "--strict"),
        ("inf.csv:4", "not a finite number"),
    ),
    Fault(
        "rating 1e400 is a bad line (--strict)",
        lambda s: s.prepare(s.file("big.csv", ratings_csv("1e400")), "--strict"),
        ("big.csv:4", "not a finite number"),
    ),
    Fault(
        "unreadable metadata file in a source directory",
        lambda s: s.prepare(recbole_dir(s, unreadable)),
        ("rb.item", "ermission denied"),
        no_dac=True,
    ),
    Fault(
        "a directory where a source file is expected",
        lambda s: s.prepare(s.file("ok.csv", csv_lines()), "--meta", s.tmp),
        ("--meta", "directory"),
    ),
    Fault(
        "binary --meta file",
        lambda s: s.prepare(s.file("ok.csv", csv_lines()), "--meta", s.file("meta.csv", random_bytes(7))),
        ("meta.csv", "not text"),
    ),
    Fault(
        "--workspace is a file",
        lambda s: ["prepare", "--dataset", "demo", "-w", str(s.file("ws-file", "x")), "-q"],
        ("ws-file", "Not a directory"),
    ),
    # -- names and numbers given on the command line ------------------------------------------
    Fault(
        "--dataset of 300 characters",
        lambda s: ["prepare", str(s.file("ok.csv", csv_lines())), "--dataset", "d" * 300, "-w", str(s.ws), *LOOSE],
        ("--dataset", "too long"),
    ),
    *(
        Fault(
            f"--dataset {name!r}",
            lambda s, name=name: [
                "prepare", str(s.file("ok.csv", csv_lines())), f"--dataset={name}", "-w", str(s.ws), *LOOSE],
            ("--dataset", "letters, digits"),
        )
        for name in ("my data", "a\nb", "a\\b", "x:y", "-x")
    ),
    Fault(
        "a 150-character file name gives a valid default --dataset name",
        lambda s: s.prepare(s.file("a" * 150 + ".csv", csv_lines()), "--json"),
        ('"dataset": "' + "a" * 100 + '"',),
        exit_code=0,
    ),
    Fault(
        "--delimiter of two characters",
        lambda s: s.prepare(s.file("ok.csv", csv_lines()), "--delimiter", "ab"),
        ("--delimiter", "one character"),
    ),
    Fault(
        "--min-rating nan",
        lambda s: [*s.prepare(s.file("ok.csv", csv_lines())), "--min-rating", "nan"],  # after LOOSE's
        ("--min-rating", "finite"),
    ),
    Fault(
        "train --dim -5",
        lambda s: ["train", *TRAIN_FLAGS[:-2], "--dim", "-5", "-w", str(s.ws)],
        ("--dim",),
    ),
    *(
        Fault(
            f"train {flag} {value}",
            lambda s, flag=flag, value=value: ["train", *TRAIN_FLAGS[:-2], flag, value, "-w", str(s.ws)],
            (f"{flag} {value}", "out of range"),
        )
        for flag, value in (("--dim", "0"), ("--layers", "-1"))
    ),
    Fault(
        "perturb --ratio 40",
        lambda s: ["perturb", "-d", "demo", "--ratio", "40", "-w", str(s.ws)],
        ("--ratio", "at most 10"),
    ),
    # -- damaged artifacts ---------------------------------------------------------------------
    Fault(
        "truncated best.pt (explain)",
        lambda s: (truncate(s.artifact() / "best.pt"),
                   ["explain", "--run", RUN, "--user", "3", "--index", "-w", str(s.ws)])[1],
        ("best.pt", "damaged"),
    ),
    Fault(
        "truncated best.pt (evaluate, recomputed)",
        lambda s: (truncate(s.artifact() / "best.pt"),
                   ["evaluate", RUN, "--mask-valid", "--device", "cpu", "-w", str(s.ws)])[1],
        ("best.pt", "damaged"),
    ),
    Fault(
        "truncated checkpoint.pt on --resume",
        lambda s: (interrupted_run(s, damage=lambda d: truncate(d / "checkpoint.pt")),
                   ["train", *TRAIN_FLAGS, "--resume", "-w", str(s.ws)])[1],
        ("checkpoint.pt", "--restart"),
    ),
    Fault(
        "truncated per_user_test.npz (evaluate --compare)",
        lambda s: (truncate(s.artifact() / "per_user_test.npz"),
                   ["evaluate", RUN, "--compare", RUN, "-w", str(s.ws)])[1],
        ("per_user_test.npz", "damaged"),
    ),
    Fault(
        "truncated metrics.json (train finds the run done)",
        lambda s: (truncate(s.artifact() / "metrics.json"), ["train", *TRAIN_FLAGS, "-w", str(s.ws)])[1],
        ("metrics.json", "damaged"),
    ),
    Fault(
        "broken manifest.json: status lists it as damaged and shows the rest",
        lambda s: (truncate(s.artifact() / "manifest.json"), ["status", "-w", str(s.ws)])[1],
        ("damaged", "manifest.json", "datasets/demo@"),
        exit_code=0,
    ),
    Fault(
        "broken manifest.json: evaluate the run",
        lambda s: (truncate(s.artifact() / "manifest.json"), ["evaluate", RUN, "-w", str(s.ws)])[1],
        ("manifest.json", "damaged"),
    ),
    Fault(
        "broken manifest.json: status --json",
        lambda s: (truncate(s.artifact() / "manifest.json"), ["status", "--json", "-w", str(s.ws)])[1],
        ("manifest.json", '"damaged"'),
        exit_code=0,
    ),
    # -- the machine ------------------------------------------------------------------------------
    Fault(
        "disk full (ulimit -f 100) in prepare",
        lambda s: ["prepare", "--dataset", "demo", "-w", str(s.tmp / "fresh"), "-q"],
        ("file too large", "while writing"),
        file_size_limit=DISK_LIMIT,
        marks=(pytest.mark.slow,),
    ),
    Fault(
        "disk full (ulimit -f 100) in train",
        lambda s: ["train", *TRAIN_FLAGS[:-1], "64", "--seed", "5", "-w", str(s.ws), "-q"],
        ("file too large", "while writing"),
        file_size_limit=DISK_LIMIT,
        marks=(pytest.mark.slow,),
    ),
    # -- the LLM stage ------------------------------------------------------------------------------
    Fault(
        "motivate against a server that is not there",
        lambda s: ["motivate", "-d", "demo", "--base-url", dead_url(s), "-w", str(s.ws), "-q"],
        ("cannot reach the LLM server at", dead_url, "connection failed", "--base-url"),
        exit_code=1,
    ),
    Fault(
        "embed motivations that have no complete version",
        lambda s: ((s.ws / "motivations" / "demo").mkdir(parents=True),
                   ["embed", "--motivations", "demo", "-w", str(s.ws), "-q"])[1],
        ("motivations/demo has no complete version", "lmmrec motivate"),
        exit_code=2,
    ),
    Fault(
        "embed from a llama.cpp server whose model does not pool (per-token vectors)",
        lambda s: ["embed", "--motivations", extractive_motivations(s), "-w", str(s.ws), "-q",
                   "--backend", "openai", "--base-url", llama_url(), "--api-key-env", "NO_KEY_VAR"],
        ("one vector per token", "--pooling mean"),
        exit_code=1,
    ),
    # -- honest output of commands that succeed ----------------------------------------------------
    Fault(
        "explain --k 1000 says how many exist",
        lambda s: ["explain", "--run", RUN, "--user", "3", "--index", "--k", "1000", "-w", str(s.ws)],
        ("only", "of the 1000 asked"),
        exit_code=0,
    ),
    Fault(
        "status shows an interrupted run",
        lambda s: (interrupted_run(s, damage=lambda d: None), ["status", "-w", str(s.ws)])[1],
        ("interrupted", RUN, "--resume"),
        exit_code=0,
    ),
    Fault(
        "status warns about an artifact whose parent is gone",
        lambda s: (shutil.rmtree(s.artifact("datasets", "demo")), ["status", "-w", str(s.ws)])[1],
        ("parent", "is gone", RUN),
        exit_code=0,
    ),
]


@pytest.fixture(scope="module")
def base_workspace(demo_workspace: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("faults") / "ws"
    shutil.copytree(demo_workspace / "datasets", root / "datasets", symlinks=True)
    result = CliRunner().invoke(app, ["train", *TRAIN_FLAGS, "-w", str(root), "-q"])
    assert result.exit_code == 0, result.output
    return root


def latest_pointers(ws: Path) -> dict[str, str]:
    return {str(p.relative_to(ws)): os.readlink(p) for p in ws.glob("*/*/latest") if p.is_symlink()}


def run_lmmrec(args: list[str], file_size_limit: int | None, no_dac: bool = False) -> tuple[int, str]:
    """Exit code and combined output (an uncaught exception shows as its traceback)."""
    if file_size_limit is None and not no_dac:
        result = CliRunner().invoke(app, args)
        output = result.output
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            import traceback

            output += "".join(traceback.format_exception(result.exception))
        return result.exit_code, output

    def limit() -> None:  # Python ignores SIGXFSZ, so an oversized write raises EFBIG
        if file_size_limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))
        if no_dac:
            _drop_dac_capabilities()

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run([sys.executable, "-m", "lmmrec_cli", *args], capture_output=True, text=True,
                          preexec_fn=limit, env=env, cwd=REPO_ROOT, timeout=120)
    return done.returncode, done.stdout + done.stderr


# Cases not fixed yet (the corpus lands before the fixes; each leaves this set as it is fixed).
PENDING: set[str] = set()


def _param(fault: Fault):
    marks = list(fault.marks)
    if fault.name in PENDING:
        marks.append(pytest.mark.xfail(reason="not fixed yet", strict=True))
    if fault.xfail:
        marks.append(pytest.mark.xfail(reason=fault.xfail, strict=True))
    return pytest.param(fault, id=fault.name, marks=marks)


@pytest.mark.parametrize("fault", [_param(f) for f in FAULTS])
def test_fault(fault: Fault, base_workspace: Path, tmp_path: Path) -> None:
    scene = Scene(tmp_path, tmp_path / "ws")
    shutil.copytree(base_workspace, scene.ws, symlinks=True)
    args = fault.build(scene)
    before = latest_pointers(scene.ws)
    code, output = run_lmmrec(args, fault.file_size_limit, fault.no_dac)
    _record(fault, code, output)

    assert "Traceback" not in output, output
    if fault.exit_code is None:
        assert code != 0, output
    else:
        assert code == fault.exit_code, output
    flat = " ".join(output.split())
    for expected in fault.names:
        text = expected(scene) if callable(expected) else expected
        assert text in flat, f"{text!r} not in: {output}"
    # the workspace is still usable and nothing it pointed at moved
    status = CliRunner().invoke(app, ["status", "-w", str(scene.ws)])
    assert status.exit_code == 0 and status.exception is None, status.output
    after = latest_pointers(scene.ws)
    assert {pointer: after.get(pointer) for pointer in before} == before  # new ones may appear
    for pointer in before:
        assert (scene.ws / pointer).resolve().is_dir(), pointer
    # only training runs keep their staging directory (for --resume)
    for staging in scene.ws.glob("*/*/.staging/*"):
        assert staging.parts[-4] == "runs", f"staging left behind: {staging}"


def _record(fault: Fault, code: int, output: str) -> None:
    table = os.environ.get("LMMREC_FAULT_TABLE")
    if not table:
        return
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    first = fault.names[0] if fault.names and isinstance(fault.names[0], str) else ""
    message = next((line for line in lines if line.startswith(("error:", "warning:"))), None) or next(
        (line for line in lines if first and first in line), lines[-1] if lines else "")
    tracebacks = output.count("Traceback")
    with open(table, "a", encoding="utf-8") as handle:
        name = fault.name.replace("|", "\\|").replace("\n", "\\n")
        handle.write(f"| {name} | {code} | {message.replace('|', '/')[:200]} | {tracebacks} |\n")


def test_status_shows_a_noisy_dataset_once(base_workspace: Path, tmp_path: Path) -> None:
    """A `perturb` dataset is a child of the clean one: shown under it, not again at the top."""
    ws = tmp_path / "ws"
    shutil.copytree(base_workspace, ws, symlinks=True)
    noisy = CliRunner().invoke(app, ["perturb", "-d", "demo", "--ratio", "0.1", "-w", str(ws)])
    assert noisy.exit_code == 0, noisy.output
    status = CliRunner().invoke(app, ["status", "-w", str(ws)])
    assert status.exit_code == 0, status.output
    assert status.output.count("datasets/demo-noise10@") == 1, status.output
    assert status.output.count("datasets/demo@") == 1, status.output
