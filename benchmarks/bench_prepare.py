"""Benchmark ``lmmrec prepare``: the columnar path against the pure-Python path it replaced.

Generates gzip JSON-lines files in the Amazon 2018 schema (fixed pools of users and items,
review texts of ~300-600 characters) and, for each size, runs ``lmmrec prepare`` as a
subprocess twice in one session, one after the other on the same file: the *baseline* (the
package as of ``--baseline`` REV, extracted with ``git archive`` into the work directory: the
pure-Python reader and pipeline) and this checkout. It reports lines per second (wall and per
CPU-second) and the peak resident memory of each, their ratio, and whether the four output
tables are byte-identical. Memory must not grow with the number of lines: sizes above
``--baseline-max-lines`` (default 5M) run the new path only, for the memory bound.

    python benchmarks/bench_prepare.py                              # 1M and 5M lines, old vs new
    python benchmarks/bench_prepare.py --lines 1000000 5000000 20000000 --keep --workdir DIR
    python benchmarks/bench_prepare.py --lines 200000               # a quick look
    python benchmarks/bench_prepare.py --profile 200000             # cProfile of the parse stage

Polars runs on ``--threads`` threads (default 2, this machine's cores; the new path also
decompresses and writes in threads of its own, the old path runs on one core): lines per second
wall is the user's number, lines per CPU-second the work done. This is a script, not a test: it takes minutes and its
numbers depend on the machine; results are recorded in ``benchmarks/bench_prepare.md``.
"""

from __future__ import annotations

import argparse
import cProfile
import gzip
import json
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

WORDS = (
    "great quality price fit size color smell works broke after weeks love hate would buy again "
    "not worth money arrived quickly packaging damaged gift daughter son wife husband skin hair "
    "soft rough cheap sturdy flimsy recommend return disappointed happy perfect small large "
    "comfortable battery charger screen sound loud quiet easy hard install instructions manual"
).split()
TEXT_POOL = 20_000  # distinct review texts; drawn per line so the file is not one repeated text


def _texts(rng: np.random.Generator) -> list[str]:
    """JSON-escaped review texts of 300-600 characters."""
    vocabulary = np.asarray(WORDS)
    texts = []
    for _ in range(TEXT_POOL):
        target = int(rng.integers(300, 601))
        words = vocabulary[rng.integers(0, len(vocabulary), size=target // 4)]
        text = " ".join(words)[:target]
        texts.append(json.dumps(text.capitalize() + "."))
    return texts


def generate(
    path: Path, lines: int, users: int = 100_000, items: int = 50_000, seed: int = 0
) -> None:
    """Write ``lines`` reviews in the Amazon 2018 schema (gzip, level 1 to keep this quick)."""
    rng = np.random.default_rng(seed)
    texts = _texts(rng)
    summaries = [
        json.dumps(s) for s in ("Five Stars", "Great", "Not as described", "OK", "Love it")
    ]
    user_ids = [f"A{k:013d}" for k in range(users)]
    item_ids = [f"B{k:09d}" for k in range(items)]
    # Skewed item popularity, as in real catalogues; users uniform.
    item_weights = 1.0 / np.arange(1, items + 1) ** 0.6
    item_weights /= item_weights.sum()
    chunk = 100_000
    with gzip.open(path, "wb", compresslevel=1) as out:
        for start in range(0, lines, chunk):
            n = min(chunk, lines - start)
            user = rng.integers(0, users, size=n)
            item = rng.choice(items, size=n, p=item_weights)
            rating = rng.choice([1, 2, 3, 4, 5], size=n, p=[0.05, 0.05, 0.1, 0.2, 0.6])
            text = rng.integers(0, TEXT_POOL, size=n)
            summary = rng.integers(0, len(summaries), size=n)
            stamp = rng.integers(1_200_000_000, 1_540_000_000, size=n)
            buffer = []
            for k in range(n):
                buffer.append(
                    f'{{"overall": {rating[k]}.0, "verified": true, "reviewTime": "09 1, 2016", '
                    f'"reviewerID": "{user_ids[user[k]]}", "asin": "{item_ids[item[k]]}", '
                    f'"style": {{"Size:": " 7.0 oz"}}, "reviewerName": "Reviewer {user[k]}", '
                    f'"reviewText": {texts[text[k]]}, "summary": {summaries[summary[k]]}, '
                    f'"unixReviewTime": {stamp[k]}}}\n'
                )
            out.write("".join(buffer).encode())


# The last commit whose prepare parsed every line in Python (before the columnar engine).
BASELINE_REV = "4fae261"
TABLES = ("interactions.parquet", "reviews.parquet", "users.parquet", "items.parquet")


def extract_baseline(rev: str, into: Path) -> Path:
    """The ``lmmrec_cli`` package as of ``rev``, extracted from this repository's history."""
    repo = Path(__file__).resolve().parents[1]
    target = into / f"baseline-{rev}"
    if not (target / "lmmrec_cli").is_dir():
        target.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "-C", str(repo), "archive", rev, "lmmrec_cli"], capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target


def measure(path: Path, workspace: Path, extra: list[str], pythonpath: Path) -> dict:
    """Run the measurement in a helper process so RUSAGE_CHILDREN covers this one prepare only."""
    helper = (
        "import json, resource, sys, time, subprocess\n"
        "t = time.perf_counter()\n"
        "p = subprocess.run(sys.argv[1:], capture_output=True)\n"
        "wall = time.perf_counter() - t\n"
        "usage = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
        "peak_kib, cpu = usage.ru_maxrss, usage.ru_utime + usage.ru_stime\n"
        "print(json.dumps({'rc': p.returncode, 'wall_s': wall, 'cpu_s': cpu, 'peak_rss_mib': peak_kib / 1024,\n"
        "                  'stdout': p.stdout.decode(), 'stderr': p.stderr.decode()[-2000:]}))\n"
    )
    command = [
        sys.executable,
        "-m",
        "lmmrec_cli",
        "prepare",
        str(path),
        "-w",
        str(workspace),
        "-q",
        "--json",
        *extra,
    ]
    # PYTHONPATH picks the package; the working directory is the workspace's parent, so that
    # Python's implicit "current directory first" cannot pick this checkout for the baseline.
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    result = json.loads(
        subprocess.run(
            [sys.executable, "-c", helper, *command],
            capture_output=True,
            check=True,
            env=env,
            cwd=workspace.parent,
        ).stdout
    )
    if result["rc"] != 0:
        raise SystemExit(f"prepare failed: {result['stderr']}")
    output = json.loads(result.pop("stdout"))
    result["counts"] = output["counts"]
    result["dir"] = next(p for p in (workspace / "datasets").glob("*/*") if (p / "manifest.json").is_file())
    return result


def same_bytes(a: Path, b: Path) -> bool:
    return all((a / name).read_bytes() == (b / name).read_bytes() for name in TABLES)


def profile_parse(path: Path, top: int = 25) -> None:
    """cProfile of reading and spilling only (the stage whose cost grows with the lines)."""
    # This checkout's package, not whichever one the interpreter has installed.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from lmmrec_cli.data.badlines import BadLines
    from lmmrec_cli.data.formats import ReadOptions
    from lmmrec_cli.data.formats.amazon import Amazon2018
    from lmmrec_cli.data.pipeline import PrepareReport, PrepareSettings, _parse, _Spill, _Vocabulary

    with tempfile.TemporaryDirectory() as tmp, _Spill(Path(tmp) / "spill") as spill:
        reviews = Amazon2018().review_batches(path, ReadOptions(), BadLines())
        profiler = cProfile.Profile()
        started = time.perf_counter()
        profiler.enable()
        report = PrepareReport()
        _parse(reviews, PrepareSettings(min_rating=3), spill, _Vocabulary(), _Vocabulary(), report)
        profiler.disable()
        wall = time.perf_counter() - started
    print(f"parse stage: {report.records_read:,} lines in {wall:.1f} s under the profiler")
    pstats.Stats(profiler).sort_stats("tottime").print_stats(top)


def _line(label: str, lines: int, r: dict) -> str:
    counts = r["counts"]
    return (
        f"{label:>4} {lines:>11,} lines  {r['wall_s']:7.1f} s wall  {lines / r['wall_s']:>9,.0f} lines/s  "
        f"{r['cpu_s']:7.1f} s CPU  {lines / r['cpu_s']:>9,.0f} lines/CPU-s  peak RSS {r['peak_rss_mib']:,.0f} MiB"
        f"  -> {counts['users']:,} users, {counts['items']:,} items, "
        f"{sum(counts['interactions'].values()):,} interactions, {counts['partitions']} partitions"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, nargs="+", default=[1_000_000, 5_000_000])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--baseline", default=BASELINE_REV, help="git revision of the old path")
    parser.add_argument(
        "--baseline-max-lines", type=int, default=5_000_000, help="larger sizes run the new path only"
    )
    parser.add_argument("--threads", type=int, default=2, help="Polars threads (POLARS_MAX_THREADS)")
    parser.add_argument("--workdir", type=Path, default=None, help="where files go (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep generated files")
    parser.add_argument("--profile", type=int, metavar="LINES", help="profile the parse stage on this many lines")
    parser.add_argument("prepare_args", nargs="*", help="extra arguments for lmmrec prepare (after --)")
    args = parser.parse_args()
    os.environ["POLARS_MAX_THREADS"] = str(args.threads)

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-prepare-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        if args.profile:
            path = workdir / f"reviews_{args.profile}.json.gz"
            generate(path, args.profile, args.users, args.items)
            profile_parse(path)
            return
        baseline = extract_baseline(args.baseline, workdir)
        rows = []
        for lines in args.lines:
            path = workdir / f"reviews_{lines}.json.gz"
            started = time.perf_counter()
            if not path.exists():
                generate(path, lines, args.users, args.items)
            print(
                f"generated {lines:,} lines ({path.stat().st_size / 2**20:,.0f} MiB gzip) "
                f"in {time.perf_counter() - started:.0f} s",
                flush=True,
            )
            row: dict = {"lines": lines}
            here = Path(__file__).resolve().parents[1]
            runs = [("old", baseline), ("new", here)] if lines <= args.baseline_max_lines else [("new", here)]
            for label, pythonpath in runs:
                workspace = workdir / f"ws_{label}_{lines}"
                shutil.rmtree(workspace, ignore_errors=True)
                result = measure(path, workspace, args.prepare_args, pythonpath)
                # CPU time too: on a shared machine the wall time says as much about the neighbours.
                print(_line(label, lines, result), flush=True)
                row[label] = result
            if "old" in row:
                row["identical"] = same_bytes(row["old"]["dir"], row["new"]["dir"])
                row["same_counts"] = row["old"]["counts"] == row["new"]["counts"]
                old, new = row["old"], row["new"]
                print(
                    f"     new/old: {old['wall_s'] / new['wall_s']:.1f}x lines/s wall, "
                    f"{old['cpu_s'] / new['cpu_s']:.1f}x lines/CPU-s; tables byte-identical: {row['identical']}, "
                    f"counts equal: {row['same_counts']}",
                    flush=True,
                )
            for label, _ in runs:
                shutil.rmtree(workdir / f"ws_{label}_{lines}", ignore_errors=True)
                row[label] = {
                    "wall_s": round(row[label]["wall_s"], 1),
                    "lines_per_s": round(lines / row[label]["wall_s"]),
                    "cpu_s": round(row[label]["cpu_s"], 1),
                    "lines_per_cpu_s": round(lines / row[label]["cpu_s"]),
                    "peak_rss_mib": round(row[label]["peak_rss_mib"]),
                }
            rows.append(row)
        print(json.dumps(rows))
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
