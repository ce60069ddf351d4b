"""Print our runs beside published numbers (used by the recipes; `python published.py -h`).

Reads the finished runs ``<prefix>-<model>-s<seed>`` of a workspace, averages each metric over
seeds, and prints it beside the published value with the relative gap, plus the time per run and
per epoch and the epochs to early stop.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

from lmmrec_cli.workspace import Workspace

# RLMRec Table 1 (mean of 5 seeds) on its released Amazon-book split (shared/data/rlmrec_splits).
PUBLISHED = {
    "rlmrec-amazon": {
        "lightgcn": {"recall@5": .0570, "recall@10": .0915, "recall@20": .1411,
                     "ndcg@5": .0574, "ndcg@10": .0694, "ndcg@20": .0856},
        "sgl": {"recall@5": .0637, "recall@10": .0994, "recall@20": .1473,
                "ndcg@5": .0632, "ndcg@10": .0756, "ndcg@20": .0913},
        "simgcl": {"recall@5": .0618, "recall@10": .0992, "recall@20": .1512,
                   "ndcg@5": .0619, "ndcg@10": .0749, "ndcg@20": .0919},
    },
}
METRICS = ("recall@5", "recall@10", "recall@20", "ndcg@5", "ndcg@10", "ndcg@20")


def _run_stats(ws: Workspace, name: str) -> dict | None:
    ref = ws.latest("runs", name)
    if ref is None:
        return None
    metrics = json.loads((ref.path / "metrics.json").read_text())
    epochs = [json.loads(line) for line in (ref.path / "log.jsonl").read_text().splitlines() if line.strip()]
    manifest = ref.manifest()
    return {
        "test": metrics["test"],
        "epochs_run": metrics["epochs_run"],
        "best_epoch": metrics["best_epoch"],
        "seconds": manifest.get("duration_s", 0.0),
        "epoch_seconds": statistics.median(e["time_s"] for e in epochs) if epochs else 0.0,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("prefix", choices=sorted(PUBLISHED))
    parser.add_argument("--workspace", required=True)
    parser.add_argument("--models", nargs="+", required=True)
    parser.add_argument("--seeds", nargs="+", required=True)
    args = parser.parse_args(argv)
    ws = Workspace(args.workspace)
    published = PUBLISHED[args.prefix]
    print(f"{'model':10} {'metric':10} {'ours (mean ± std, n)':24} {'published':>9} {'gap':>7}")
    for model in args.models:
        runs = [s for s in (_run_stats(ws, f"{args.prefix}-{model}-s{seed}") for seed in args.seeds) if s]
        if not runs:
            print(f"{model:10} no finished runs")
            continue
        for metric in METRICS:
            values = [r["test"][metric] for r in runs]
            mean = statistics.fmean(values)
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            ref = published.get(model, {}).get(metric)
            gap = f"{(mean / ref - 1) * 100:+.1f}%" if ref else "—"
            ref_text = f"{ref:.4f}" if ref else "—"
            print(f"{model:10} {metric:10} {mean:.4f} ± {std:.4f} (n={len(values)}) {ref_text:>9} {gap:>7}")
        print(
            f"{model:10} time: {statistics.fmean(r['seconds'] for r in runs):.0f} s per run, "
            f"{statistics.fmean(r['epoch_seconds'] for r in runs):.2f} s per epoch (median), "
            f"epochs run {[r['epochs_run'] for r in runs]}, best epochs {[r['best_epoch'] for r in runs]}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
