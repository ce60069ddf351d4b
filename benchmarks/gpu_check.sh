#!/usr/bin/env bash
# One check of the CUDA path, for a machine with a GPU; about 8 minutes at most.
#
#   benchmarks/gpu_check.sh             # run every step on CUDA, print and save one summary table
#   benchmarks/gpu_check.sh --dry-run   # list the steps and check they are runnable; CPU only
#   benchmarks/gpu_check.sh --out FILE  # where the summary goes (default: $OUT/gpu_check.txt when
#                                       # OUT is set, else ./gpu_check.txt)
#
# Steps, each under its own time limit (the limits add up to 8 minutes):
#   1. the CUDA tests (pytest -m cuda): a model's and LMMRec's step, the alignment, evaluation and
#      `train --device cuda` against the CPU;
#   2. bench_train.py --device cuda: the trainer's LightGCN epoch and the evaluator;
#   3. bench_plugins.py --device cuda: LMMRec's step over LightGCN's (batch 512 and 4096) and over
#      WeightedGCL's (batch 4096);
#   4. `train --device cuda` on RLMRec's Amazon split for GPU_CHECK_EPOCHS epochs (LightGCN, and
#      LightGCN+LMMRec on the split's released text vectors), with time and peak GPU memory.
#      Needs LMMREC_RLMREC_AMAZON=DIR, RLMRec's released data/amazon directory (trn_mat.pkl,
#      val_mat.pkl, tst_mat.pkl, usr_emb_np.pkl, itm_emb_np.pkl); unset, the step is skipped.
#
# Settings (environment): PYTHON (default python: an interpreter where lmmrec and a CUDA build of
# torch are installed, e.g. pip install -e ".[test]"), LMMREC_RLMREC_AMAZON (unset: skip step 4),
# GPU_CHECK_EPOCHS (default 3), GPU_CHECK_DEVICE (default cuda; cpu runs the script itself on a
# CPU, where the steps' limits are too short for the benchmarks).
# Exit status: 0 when every step that ran passed, 1 when one failed or timed out, 2 when CUDA is
# not usable here (nothing is run then).
set -u -o pipefail

usage() { sed -n '2,/^set -u/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

DRY_RUN=0
SUMMARY="${OUT:+$OUT/}gpu_check.txt"
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY_RUN=1 ;;
    --out) shift; SUMMARY="${1:?--out needs a file}" ;;
    -h|--help) usage; exit 0 ;;
    *) echo "gpu_check.sh: unknown option $1 (use --dry-run, --out FILE or --help)" >&2; exit 64 ;;
  esac
  shift
done

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 1
PY="${PYTHON:-python}"
DEVICE="${GPU_CHECK_DEVICE:-cuda}"
EPOCHS="${GPU_CHECK_EPOCHS:-3}"
AMAZON="${LMMREC_RLMREC_AMAZON:-}"
SCRATCH="$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")"
trap 'rm -rf "$SCRATCH"' EXIT
WS="$SCRATCH/workspace"
# The exact default, the same with the alignment untiled, and w/o ICM (each builds its own plugin).
LMMREC_ROWS="'lmmrec (teacher_refresh_steps 1: exact),lmmrec (alignment untiled: 3×B×B arrays whole),lmmrec w/o ICM'"
TRAIN_ARGS="--epochs $EPOCHS --eval-every $EPOCHS --lr 1e-3 --batch-size 4096 --device $DEVICE -w $WS -q"

NAMES=() LIMITS=() COMMANDS=() KEYS=()
step() {  # name, time limit (s), command, grep pattern of the output lines worth keeping
  NAMES+=("$1"); LIMITS+=("$2"); COMMANDS+=("$3"); KEYS+=("$4")
}
step "CUDA tests (pytest -m cuda)" 110 \
  "$PY -m pytest -q -m cuda -rs -p no:cacheprovider tests" \
  "passed|failed|skipped|error"
step "bench_train: LightGCN epoch, evaluation" 80 \
  "$PY benchmarks/bench_train.py --device $DEVICE --quick --skip-big --threads 8" \
  "^torch|LightGCN epoch|full-ranking|peak"
step "bench_plugins: LMMRec / LightGCN, batch 512" 50 \
  "$PY benchmarks/bench_plugins.py --device $DEVICE --only $LMMREC_ROWS --batch 512 --steps 10 --rounds 3 --threads 8" \
  "^graph|^lightgcn|^lmmrec|peak"
step "bench_plugins: LMMRec / LightGCN, batch 4096" 50 \
  "$PY benchmarks/bench_plugins.py --device $DEVICE --only $LMMREC_ROWS --batch 4096 --steps 5 --rounds 3 --threads 8" \
  "^graph|^lightgcn|^lmmrec|peak"
step "bench_plugins: LMMRec / WeightedGCL, batch 4096" 50 \
  "$PY benchmarks/bench_plugins.py --device $DEVICE --only $LMMREC_ROWS --model weightedgcl --batch 4096 --steps 5 --rounds 3 --threads 8" \
  "^graph|^weightedgcl|^lmmrec|peak"
if [ -n "$AMAZON" ]; then
  step "train --device $DEVICE: RLMRec amazon, $EPOCHS epochs" 130 \
    "$PY -m lmmrec_cli prepare --format rlmrec $AMAZON --dataset amazon-book -w $WS -q && \
     $PY benchmarks/cuda_run.py train -d amazon-book -m lightgcn --name gpu-lightgcn $TRAIN_ARGS && \
     if [ -f $AMAZON/usr_emb_np.pkl ] && [ -f $AMAZON/itm_emb_np.pkl ]; then \
       $PY benchmarks/cuda_run.py train -d amazon-book -m lightgcn --plugin lmmrec -e amazon-book \
         --name gpu-lmmrec $TRAIN_ARGS; \
     else echo 'LightGCN+LMMRec skipped: no usr_emb_np.pkl / itm_emb_np.pkl (text vectors) in $AMAZON'; fi" \
    "exit_code|skipped"
else
  NAMES+=("train --device $DEVICE: RLMRec amazon"); LIMITS+=(0); KEYS+=("")
  COMMANDS+=("SKIP: LMMREC_RLMREC_AMAZON is not set (RLMRec's released data/amazon directory)")
fi

if [ "$DRY_RUN" = 1 ]; then
  echo "gpu_check.sh --dry-run: the steps a GPU run would take (limits add up to 8 minutes)"
  total=0
  for i in "${!NAMES[@]}"; do
    echo "  $((i + 1)). ${NAMES[$i]} [limit ${LIMITS[$i]} s]"
    echo "       ${COMMANDS[$i]}" | sed 's/  */ /g; s/^/       /'
    total=$((total + LIMITS[i]))
  done
  echo "  total limit ${total} s; summary would go to $SUMMARY"
  # What can be checked without a GPU: the scripts and the tests marked cuda exist.
  for script in benchmarks/bench_train.py benchmarks/bench_plugins.py benchmarks/cuda_run.py; do
    [ -f "$script" ] || { echo "missing $script" >&2; exit 1; }
  done
  marked=$(grep -l "pytest.mark.cuda" tests/*.py | tr '\n' ' ')
  [ -n "$marked" ] || { echo "no test file marks tests cuda" >&2; exit 1; }
  echo "  checked: scripts present; CUDA tests in $marked"
  exit 0
fi

if ! $PY - "$DEVICE" <<'EOF'
import sys, torch
device = torch.device(sys.argv[1])
if device.type == "cpu":  # GPU_CHECK_DEVICE=cpu: to try the script itself; the limits are a GPU's
    print(f"torch {torch.__version__} on the CPU (GPU_CHECK_DEVICE=cpu): steps may hit their limits")
    sys.exit(0)
if not torch.cuda.is_available():
    build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
    sys.exit(f"gpu_check.sh: CUDA is not usable here (torch {torch.__version__}, {build}); "
             "install a CUDA build of torch or run with --dry-run")
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name(device)}")
EOF
then
  exit 2
fi
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

status=0
TABLE="$SCRATCH/table"
DETAILS="$SCRATCH/details"
printf '%-52s %-10s %8s\n' "step" "result" "seconds" > "$TABLE"
: > "$DETAILS"
for i in "${!NAMES[@]}"; do
  name="${NAMES[$i]}"
  if [ "${LIMITS[$i]}" = 0 ]; then
    printf '%-52s %-10s %8s\n' "$name" "skipped" "-" >> "$TABLE"
    printf '\n## %s\n%s\n' "$name" "${COMMANDS[$i]}" >> "$DETAILS"
    echo "== $name: ${COMMANDS[$i]}"
    continue
  fi
  echo "== $name (limit ${LIMITS[$i]} s)"
  log="$SCRATCH/step$i.log"
  started=$(date +%s)
  timeout --kill-after=10 "${LIMITS[$i]}" bash -c "${COMMANDS[$i]}" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  seconds=$(( $(date +%s) - started ))
  case "$rc" in
    0) result="ok" ;;
    124|137) result="timeout"; status=1 ;;
    *) result="FAILED($rc)"; status=1 ;;
  esac
  printf '%-52s %-10s %8s\n' "$name" "$result" "$seconds" >> "$TABLE"
  {
    printf '\n## %s: %s in %s s\n' "$name" "$result" "$seconds"
    grep -E "${KEYS[$i]}" "$log" | tail -n 20
    [ "$result" = ok ] || tail -n 15 "$log"
  } >> "$DETAILS"
done

{
  echo "# gpu_check.sh, $(date -u '+%Y-%m-%d %H:%M UTC'), $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
  echo
  cat "$TABLE"
  cat "$DETAILS"
} > "$SCRATCH/summary"
mkdir -p "$(dirname "$SUMMARY")" && cp "$SCRATCH/summary" "$SUMMARY"
echo
cat "$SCRATCH/summary"
echo
echo "summary written to $SUMMARY"
exit $status
