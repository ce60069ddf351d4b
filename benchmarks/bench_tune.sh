#!/usr/bin/env bash
# What median pruning saves `lmmrec tune` on the demo, and what its warm-up costs: the same
# 16-trial LightGCN study (same sampler seed, train defaults: eval every 3 epochs, patience 5, up
# to 300 epochs) with the default pruner (no pruning before the epoch at which early stopping
# could first end a run, 18 here), with pruning from the first validation (--prune-warmup 0), and
# without pruning, each in its own workspace (a shared one would let a later study reuse an earlier
# one's identical trials). Prints one table; the studies stay in $DIR for inspection.
set -euo pipefail
DIR=${1:-$(mktemp -d)}
export OMP_NUM_THREADS=1
for mode in warmup nowarmup noprune; do
    export LMMREC_WORKSPACE=$DIR/ws-$mode
    lmmrec prepare --dataset demo -q >/dev/null
    case $mode in warmup) flag="" ;; nowarmup) flag="--prune-warmup 0" ;; noprune) flag="--no-prune" ;; esac
    start=$(date +%s)
    # shellcheck disable=SC2086  # $flag is zero or two words
    lmmrec tune -d demo -m lightgcn --trials 16 --study demo $flag --threads 1 --device cpu --json > "$DIR/$mode.json"
    echo "$(( $(date +%s) - start ))" > "$DIR/$mode.wall"
done
python - "$DIR" <<'EOF'
import sys
from pathlib import Path

import optuna
from optuna.trial import TrialState

optuna.logging.set_verbosity(optuna.logging.WARNING)
root = Path(sys.argv[1])
print("| | wall s | trials/h | epochs trained (to the last validation) | pruned | best valid R@20 (trial) |")
print("|---|---:|---:|---:|---:|---|")
for mode in ("warmup", "nowarmup", "noprune"):
    study = optuna.load_study(study_name="demo", storage=f"sqlite:///{root}/ws-{mode}/studies/optuna.db")
    trials = study.get_trials(deepcopy=False)
    wall = int((root / f"{mode}.wall").read_text())
    epochs = sum(max(t.intermediate_values, default=0) for t in trials)
    pruned = sum(t.state == TrialState.PRUNED for t in trials)
    best = study.best_trial
    print(f"| {mode} | {wall} | {len(trials) * 3600 / wall:.0f} | {epochs} | {pruned} of {len(trials)} | "
          f"{best.value:.4f} ({best.number}) |")
print(f"studies: sqlite:///{root}/ws-{{warmup,nowarmup,noprune}}/studies/optuna.db")
EOF
