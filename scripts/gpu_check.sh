#!/usr/bin/env bash
# The GPU check: one short script (under 6 minutes on one H100/H200) that runs mlbench for real on
# the GPU and writes everything it measured into DIR. It uses the python3 that holds the machine's
# own CUDA torch (nothing is installed), with this checkout on PYTHONPATH.
#
#   bash scripts/gpu_check.sh DIR
#
# Each step has its own time limit, so one slow or failing step cannot lose the others' results;
# the log of each step is DIR/<step>.log, records are DIR/<step>/*.jsonl, and DIR/summary.txt says
# what each step returned.
set -uo pipefail

DIR=${1:?usage: bash scripts/gpu_check.sh DIR}
REPO=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python3}
mkdir -p "$DIR"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export MLBENCH_PROGRESS=0
START=$(date +%s)

step() {  # step NAME LIMIT_S COMMAND...
  local name=$1 limit=$2
  shift 2
  local t0=$(date +%s)
  echo "== $name (limit ${limit}s): $*" | tee -a "$DIR/summary.txt"
  timeout --signal=INT --kill-after=15 "$limit" "$@" >"$DIR/$name.log" 2>&1
  local rc=$?
  echo "   exit $rc after $(( $(date +%s) - t0 ))s" | tee -a "$DIR/summary.txt"
  tail -n 6 "$DIR/$name.log" | sed 's/^/   | /' | tee -a "$DIR/summary.txt"
}

{
  date -u +"%Y-%m-%dT%H:%M:%SZ"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv 2>&1 || true
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"
  git -C "$REPO" rev-parse HEAD 2>/dev/null || true
} >"$DIR/machine.txt" 2>&1
cat "$DIR/machine.txt"

# MAMF: the default bf16 plan (a search over 1K..20K per dimension, 10 s warm-up)
step mamf_bf16_default 150 "$PY" -m mlbench.mamf --dtype bf16 --out "$DIR/mamf_bf16_default/mamf.jsonl"
# MAMF: the peer's quick recipe as an exhaustive sweep (M 256..20480 step 256, N = K = 4096)
step mamf_bf16_peer_quick 60 "$PY" -m mlbench.mamf --dtype bf16 --sweep --m 256:20480:+256 --n 4096 --k 4096 \
  --warmup-s 2 --out "$DIR/mamf_bf16_peer_quick/mamf.jsonl"
# MAMF: fp8 e4m3 on a few large shapes
step mamf_fp8 45 "$PY" -m mlbench.mamf --dtype fp8 --shapes 4096x4096x4096,8192x8192x8192,16384x16384x8192 \
  --warmup-s 2 --out "$DIR/mamf_fp8/mamf.jsonl"

# Search against the exhaustive grid on the same range (the issue's target), if time is left
if [ $(( $(date +%s) - START )) -lt 200 ]; then
  step bench_mamf_search 120 "$PY" "$REPO/benchmarks/bench_mamf_search.py" --device cuda \
    --m 2K:12K:+2K --n 2K:12K:+2K --k 2K:12K:+2K --warmup-s 3 --rounds 3 --json "$DIR/bench_mamf_search.json"
fi

echo "total $(( $(date +%s) - START ))s" | tee -a "$DIR/summary.txt"
