#!/usr/bin/env bash
# The GPU check: one short script (under 8 minutes on one H100/H200) that runs mlbench for real on
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

TOTAL_S=${GPU_CHECK_BUDGET_S:-450}  # under 8 minutes: a 15-minute device lease leaves room for a partial rerun

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
# 1. sustained FLOPS: one large bf16 shape for 60 s, telemetry (NVML) in every record
step mamf_sustain 90 "$PY" -m mlbench.mamf --device cuda:0 --dtype bf16 --shapes 8192x8192x8192 --warmup-s 5 \
  --sustain 60 --out "$DIR/mamf_sustain/mamf.jsonl"
# 2. burn-in for 60 s: bitwise compare, memory patterns, error counters before and after
step burn 90 "$PY" -m mlbench.burn --device cuda:0 --duration 60s --out "$DIR/burn/burn.jsonl"
# 3. the reference training step: the ~1B preset for about 60 s on one GPU (tokens/s, TFLOPS, MFU)
step train_1b 120 "$PY" -m mlbench.train --device cuda:0 --preset 1b --duration 60 --no-scaling \
  --out "$DIR/train_1b/train.jsonl"
# 4. membw: the default sweep (small sizes queued behind a device delay: params.timer), h2d/d2h bound to the
#    GPU's NUMA node (params numa_node/cpus; one GPU: p2p and cross-socket effects need 2+ GPUs)
step membw_default 75 "$PY" -m mlbench.membw --device cuda:0 --out "$DIR/membw_default/membw.jsonl"
# 5. collectives: the NCCL path, one rank on one GPU (busbw 0 for one rank: time, algbw, exactness, queued timing)
step collectives_nccl_1rank 50 "$PY" -m torch.distributed.run --nproc-per-node 1 --standalone -m mlbench.collectives \
  --ops all_reduce,all_gather,reduce_scatter,broadcast,all_to_all --sizes 8:1G:x4 --modes throughput,latency \
  --timeout 60 --out "$DIR/collectives_nccl_1rank/collectives.jsonl"
# 6. fabric: one lent GPU is one node: the intra view, and the NIC discovery the node check records
step fabric_intra 40 "$PY" -m torch.distributed.run --nproc-per-node 1 --standalone -m mlbench.fabric \
  --views intra --timeout 60 --out "$DIR/fabric_intra/fabric.jsonl"
step node_nics 20 "$PY" -m mlbench.acceptance.nodecheck --io-dir "${MLBENCH_IO_DIR:-/tmp}" --out "$DIR/node/node.jsonl"
# 7. tf32: whether the runtime really runs tf32 (params.tf32_effective), fp32 beside it
step mamf_tf32 30 "$PY" -m mlbench.mamf --device cuda:0 --dtype tf32 --shapes 8192x8192x8192 --warmup-s 2 \
  --out "$DIR/mamf_tf32/mamf.jsonl"
# 8. MAMF: the default bf16 plan (a search over 1K..20K per dimension, 10 s warm-up)
step mamf_bf16_default 150 "$PY" -m mlbench.mamf --device cuda:0 --dtype bf16 --out "$DIR/mamf_bf16_default/mamf.jsonl"
# 9. the acceptance run, quick profile, on this GPU node (its run directory is the sample report)
step run_quick 150 "$PY" -m mlbench run --profile quick --out "$DIR/run_quick" --io-dir "${MLBENCH_IO_DIR:-/tmp}"
# 10. MAMF fp8 e4m3 on a few large shapes
step mamf_fp8 40 "$PY" -m mlbench.mamf --device cuda:0 --dtype fp8 --shapes 4096x4096x4096,8192x8192x8192 \
  --warmup-s 2 --out "$DIR/mamf_fp8/mamf.jsonl"
# the report over everything measured (verdicts, headline, telemetry plots)
step report 60 "$PY" -m mlbench report "$DIR" --out "$DIR/report"

echo "total $(( $(date +%s) - START ))s" | tee -a "$DIR/summary.txt"
