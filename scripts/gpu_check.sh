#!/usr/bin/env bash
# The GPU check: one short script (under 6 minutes on one H100/H200) that runs mlbench for real on
# the GPU and writes everything it measured into DIR. It uses the python3 that holds the machine's
# own CUDA torch (nothing is installed), with this checkout on PYTHONPATH.
#
#   bash scripts/gpu_check.sh DIR
#
# Each step has its own time limit, so one slow or failing step cannot lose the others' results.
# DIR gets three files: summary.txt (what each step returned), machine.txt (the card, driver,
# torch), and gpu_check.tgz holding every step's log (<step>.log) and records (<step>/*.jsonl).
set -uo pipefail

OUTDIR=${1:?usage: bash scripts/gpu_check.sh DIR}
REPO=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python3}
mkdir -p "$OUTDIR"
DIR=$(mktemp -d "${TMPDIR:-/tmp}/mlbench-gpu-check.XXXXXX")  # the steps' files; packed into OUTDIR at the end
trap 'cp "$DIR/summary.txt" "$DIR/machine.txt" "$OUTDIR/" 2>/dev/null; tar -czf "$OUTDIR/gpu_check.tgz" -C "$DIR" .' EXIT
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export MLBENCH_PROGRESS=0
export MLBENCH_DEBUG=1  # a failure prints its traceback into the step's log: one device run must be enough to diagnose it
START=$(date +%s)

TOTAL_S=${GPU_CHECK_BUDGET_S:-480}  # the whole script stays under 8 minutes

step() {  # step NAME LIMIT_S COMMAND...: skipped when the budget is spent, its limit capped to what is left
  local name=$1 limit=$2
  shift 2
  local left=$(( TOTAL_S - ($(date +%s) - START) ))
  if [ "$left" -lt 20 ]; then
    echo "== $name: skipped (budget spent)" | tee -a "$DIR/summary.txt"
    return
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  local t0=$(date +%s)
  echo "== $name (limit ${limit}s): $*" | tee -a "$DIR/summary.txt"
  timeout --signal=INT --kill-after=10 "$limit" "$@" >"$DIR/$name.log" 2>&1
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

# In order of priority: what is left when the budget runs out is skipped, never half-reported.
# 1. MAMF: the default bf16 plan (a search over 1K..20K per dimension, 10 s warm-up)
step mamf_bf16_default 150 "$PY" -m mlbench.mamf --dtype bf16 --out "$DIR/mamf_bf16_default/mamf.jsonl"
# 2. membw: the default sweep (copy/read/write/triad 2 MiB..8 GiB, h2d/d2h pinned and pageable to 1 GiB)
step membw_default 75 "$PY" -m mlbench.membw --device cuda --out "$DIR/membw_default/membw.jsonl"
# 3. collectives: the NCCL path for real, one rank on one GPU (busbw is 0 for one rank: time, algbw and exactness count)
step collectives_nccl_1rank 50 "$PY" -m torch.distributed.run --nproc-per-node 1 --standalone -m mlbench.collectives \
  --ops all_reduce,all_gather,reduce_scatter,broadcast,all_to_all --sizes 8:1G:x4 --timeout 60 \
  --out "$DIR/collectives_nccl_1rank/collectives.jsonl"
# 4. the acceptance run, quick profile, on this GPU node (its run directory is the sample report)
step run_quick 150 "$PY" -m mlbench run --profile quick --out "$DIR/run_quick" --io-dir "${MLBENCH_IO_DIR:-/tmp}"
# 5. MAMF fp8 e4m3 on a few large shapes
step mamf_fp8 40 "$PY" -m mlbench.mamf --dtype fp8 --shapes 4096x4096x4096,8192x8192x8192,16384x16384x8192 \
  --warmup-s 2 --out "$DIR/mamf_fp8/mamf.jsonl"
# 5b. the same with fast accumulation (what many fp8 peak figures use), one shape
step mamf_fp8_fast_accum 25 "$PY" -m mlbench.mamf --dtype fp8 --fp8-fast-accum --shapes 8192x8192x8192 \
  --warmup-s 2 --out "$DIR/mamf_fp8_fast_accum/mamf.jsonl"
# 6. MAMF: mamf-finder's quick recipe as an exhaustive sweep (M 256..20480 step 256, N = K = 4096)
step mamf_bf16_peer_quick 45 "$PY" -m mlbench.mamf --dtype bf16 --sweep --m 256:20480:+256 --n 4096 --k 4096 \
  --warmup-s 2 --out "$DIR/mamf_bf16_peer_quick/mamf.jsonl"
# 7. search against the exhaustive grid on the same range (the search benchmark's target), with what time is left
step bench_mamf_search 120 "$PY" "$REPO/benchmarks/bench_mamf_search.py" --device cuda \
  --m 2K:12K:+2K --n 2K:12K:+2K --k 2K:12K:+2K --warmup-s 3 --rounds 3 --json "$DIR/bench_mamf_search.json"

echo "total $(( $(date +%s) - START ))s" | tee -a "$DIR/summary.txt"
