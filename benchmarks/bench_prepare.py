"""Benchmark ``lmmrec prepare`` on generated Amazon-2018-format review files.

Generates gzip JSON-lines files in the Amazon 2018 schema (fixed pools of users and items,
review texts of ~300-600 characters), runs ``lmmrec prepare`` on each in a fresh workspace as
a subprocess, and reports lines per second and the peak resident memory of that subprocess.
Memory must not grow with the number of lines: the pipeline spills rows to disk and works one
user-range partition at a time, so only the id vocabularies and the per-row integer columns
grow.

    python benchmarks/bench_prepare.py                     # 1M and 5M lines (minutes)
    python benchmarks/bench_prepare.py --lines 200000      # a quick look
    python benchmarks/bench_prepare.py --profile 200000    # cProfile of the parse stage only

This is a script, not a test: it takes minutes and its numbers depend on the machine.

Measured 2026-11-25 (2 shared CPU cores, load average 3-9; default settings: rating >= 3,
5-core, 3:1:1 user split; 100k users x 50k items):

    lines   wall     lines/s   CPU     lines/CPU-s   peak RSS
    1M      69 s     14,500    30 s    33,000        445 MiB
    5M      249 s    20,100    131 s   38,200        435 MiB
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


def measure(path: Path, workspace: Path, extra: list[str]) -> dict:
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
    result = json.loads(
        subprocess.run(
            [sys.executable, "-c", helper, *command], capture_output=True, check=True
        ).stdout
    )
    if result["rc"] != 0:
        raise SystemExit(f"prepare failed: {result['stderr']}")
    result["counts"] = json.loads(result.pop("stdout"))["counts"]
    return result


def profile_parse(path: Path, top: int = 25) -> None:
    """cProfile of reading and spilling only (the stage whose cost grows with the lines)."""
    from lmmrec_cli.data.badlines import BadLines
    from lmmrec_cli.data.formats import ReadOptions
    from lmmrec_cli.data.formats.amazon import Amazon2018
    from lmmrec_cli.data.pipeline import PrepareReport, PrepareSettings, _parse, _Spill, _Vocabulary

    with tempfile.TemporaryDirectory() as tmp:
        spill = _Spill(Path(tmp) / "spill.parquet")
        reviews = Amazon2018().read_reviews(path, ReadOptions(), BadLines())
        profiler = cProfile.Profile()
        started = time.perf_counter()
        profiler.enable()
        report = PrepareReport()
        _parse(reviews, PrepareSettings(min_rating=3), spill, _Vocabulary(), _Vocabulary(), report)
        profiler.disable()
        wall = time.perf_counter() - started
    print(f"parse stage: {report.records_read:,} lines in {wall:.1f} s under the profiler")
    pstats.Stats(profiler).sort_stats("tottime").print_stats(top)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, nargs="+", default=[1_000_000, 5_000_000])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument(
        "--workdir", type=Path, default=None, help="where files go (default: a temp dir)"
    )
    parser.add_argument("--keep", action="store_true", help="keep generated files and workspaces")
    parser.add_argument(
        "--profile", type=int, metavar="LINES", help="profile the parse stage on this many lines"
    )
    parser.add_argument(
        "prepare_args", nargs="*", help="extra arguments for lmmrec prepare (after --)"
    )
    args = parser.parse_args()

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-prepare-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        if args.profile:
            path = workdir / f"reviews_{args.profile}.json.gz"
            generate(path, args.profile, args.users, args.items)
            profile_parse(path)
            return
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
            workspace = workdir / f"ws_{lines}"
            shutil.rmtree(workspace, ignore_errors=True)
            result = measure(path, workspace, args.prepare_args)
            counts = result["counts"]
            rows.append(
                (
                    lines,
                    result["wall_s"],
                    lines / result["wall_s"],
                    result["peak_rss_mib"],
                    result["cpu_s"],
                )
            )
            # CPU time too: on a shared machine the wall time says as much about the neighbours.
            print(
                f"{lines:>11,} lines  {result['wall_s']:7.1f} s wall  {lines / result['wall_s']:>9,.0f} lines/s  "
                f"{result['cpu_s']:7.1f} s CPU  {lines / result['cpu_s']:>9,.0f} lines/CPU-s  "
                f"peak RSS {result['peak_rss_mib']:,.0f} MiB  -> {counts['users']:,} users, "
                f"{counts['items']:,} items, {sum(counts['interactions'].values()):,} interactions, "
                f"{counts['partitions']} partitions",
                flush=True,
            )
        print(
            json.dumps(
                [
                    {
                        "lines": r[0],
                        "wall_s": round(r[1], 1),
                        "lines_per_s": round(r[2]),
                        "cpu_s": round(r[4], 1),
                        "lines_per_cpu_s": round(r[0] / r[4]),
                        "peak_rss_mib": round(r[3]),
                    }
                    for r in rows
                ]
            )
        )
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
