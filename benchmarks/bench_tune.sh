#!/usr/bin/env bash
# How much median pruning saves `lmmrec tune` on the demo: the same 16-trial LightGCN study
# (same sampler seed, train defaults: eval every 3 epochs, patience 5, up to 300 epochs) with and
# without pruning, each in its own workspace (a shared one would let the second study reuse the
# first one's identical trials). Prints wall seconds; the studies stay in $DIR for inspection.
set -euo pipefail
DIR=${1:-$(mktemp -d)}
export OMP_NUM_THREADS=1
for mode in prune noprune; do
    export LMMREC_WORKSPACE=$DIR/ws-$mode
    lmmrec prepare --dataset demo -q >/dev/null
    flag=""; [ $mode = noprune ] && flag="--no-prune"
    start=$(date +%s)
    lmmrec tune -d demo -m lightgcn --trials 16 --study demo $flag --threads 1 --device cpu --json > "$DIR/$mode.json"
    echo "$mode wall_s $(( $(date +%s) - start ))"
done
echo "studies: sqlite:///$DIR/ws-{prune,noprune}/studies/optuna.db"
