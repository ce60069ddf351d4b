"""Print our runs beside published numbers (used by the recipes; `python published.py -h`).

Reads the finished runs ``<prefix>-<model>[-<plugin>]-s<seed>`` of a workspace, averages each
metric over seeds, and prints it beside RLMRec's published value for the data set with the
relative gap, plus the time per run and per epoch and the epochs to early stop.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

from lmmrec_cli.workspace import Workspace

# RLMRec Table 1 (Ren et al., WWW 2024; mean of 5 seeds) on its released splits: R@5 R@10 R@20
# N@5 N@10 N@20 per model, "+rlmrec-con" rows with RLMRec's released text vectors.
_TABLE1 = {
    "amazon-book": {
        "lightgcn": ".0570 .0915 .1411 .0574 .0694 .0856",
        "lightgcn-rlmrec-con": ".0608 .0969 .1483 .0606 .0734 .0903",
        "sgl": ".0637 .0994 .1473 .0632 .0756 .0913",
        "sgl-rlmrec-con": ".0655 .1017 .1528 .0652 .0778 .0945",
        "simgcl": ".0618 .0992 .1512 .0619 .0749 .0919",
        "simgcl-rlmrec-con": ".0633 .1011 .1552 .0633 .0765 .0942",
    },
    "yelp": {
        "lightgcn": ".0421 .0706 .1157 .0491 .0580 .0733",
        "lightgcn-rlmrec-con": ".0445 .0754 .1230 .0518 .0614 .0776",
        "sgl": ".0432 .0722 .1197 .0501 .0592 .0753",
        "sgl-rlmrec-con": ".0452 .0763 .1248 .0530 .0626 .0790",
        "simgcl": ".0467 .0772 .1254 .0546 .0638 .0801",
        "simgcl-rlmrec-con": ".0470 .0784 .1292 .0546 .0642 .0814",
    },
    "steam": {
        "lightgcn": ".0518 .0852 .1348 .0575 .0687 .0855",
        "lightgcn-rlmrec-con": ".0548 .0895 .1421 .0608 .0724 .0902",
        "sgl": ".0565 .0919 .1444 .0618 .0738 .0917",
        "sgl-rlmrec-con": ".0589 .0956 .1489 .0645 .0768 .0950",
        "simgcl": ".0564 .0918 .1436 .0618 .0738 .0915",
        "simgcl-rlmrec-con": ".0582 .0945 .1482 .0638 .0760 .0942",
    },
}
METRICS = ("recall@5", "recall@10", "recall@20", "ndcg@5", "ndcg@10", "ndcg@20")
PUBLISHED = {
    data: {row: dict(zip(METRICS, map(float, values.split()), strict=True)) for row, values in rows.items()}
    for data, rows in _TABLE1.items()
}


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
    parser.add_argument("prefix", help="run names start with this (the dataset's name)")
    parser.add_argument("--data", choices=sorted(PUBLISHED), required=True)
    parser.add_argument("--workspace", required=True)
    parser.add_argument("--models", nargs="+", required=True)
    parser.add_argument("--plugins", nargs="+", default=["none"])
    parser.add_argument("--seeds", nargs="+", required=True)
    args = parser.parse_args(argv)
    ws = Workspace(args.workspace)
    published = PUBLISHED[args.data]
    rows = [m if p == "none" else f"{m}-{p}" for m in args.models for p in args.plugins]
    print(f"RLMRec Table 1, {args.data}: runs {args.prefix}-<model>-s<seed>")
    print(f"{'model':20} {'metric':10} {'ours (mean ± std, n)':24} {'published':>9} {'gap':>7}")
    for model in rows:
        runs = [s for s in (_run_stats(ws, f"{args.prefix}-{model}-s{seed}") for seed in args.seeds) if s]
        if not runs:
            print(f"{model:20} no finished runs")
            continue
        for metric in METRICS:
            values = [r["test"][metric] for r in runs]
            mean = statistics.fmean(values)
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            ref = published.get(model, {}).get(metric)
            gap = f"{(mean / ref - 1) * 100:+.1f}%" if ref else "—"
            ref_text = f"{ref:.4f}" if ref else "—"
            print(f"{model:20} {metric:10} {mean:.4f} ± {std:.4f} (n={len(values)}) {ref_text:>9} {gap:>7}")
        print(
            f"{model:20} time: {statistics.fmean(r['seconds'] for r in runs):.0f} s per run, "
            f"{statistics.fmean(r['epoch_seconds'] for r in runs):.2f} s per epoch (median), "
            f"epochs run {[r['epochs_run'] for r in runs]}, best epochs {[r['best_epoch'] for r in runs]}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
