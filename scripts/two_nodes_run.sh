#!/usr/bin/env bash
# Simulate a two-node acceptance run on one machine: two torchrun launches on localhost, one per
# "node" (MLBENCH_HOST names them simnode0 and simnode1), meeting through a c10d rendezvous on
# 127.0.0.1, writing one run directory and one report, as scripts/slurm_run.sbatch does on a cluster.
#
#   bash scripts/two_nodes_run.sh [RUN_DIR] [extra mlbench run options...]   (default: --profile quick --device cpu)
set -uo pipefail
RUN_DIR=${1:-results/twonode-$(date +%Y%m%dT%H%M%S)}
shift || true
EXTRA=("$@")
[ ${#EXTRA[@]} -eq 0 ] && EXTRA=(--profile quick --device cpu)
PORT=${PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
RUN_ID=$(basename "$RUN_DIR")
PY=${PYTHON:-python3}
mkdir -p "$(dirname "$RUN_DIR")"

pids=()
for rank in 0 1; do
  MLBENCH_HOST=simnode$rank "$PY" -m torch.distributed.run \
    --nnodes 2 --node-rank "$rank" --nproc-per-node 1 \
    --rdzv-backend c10d --rdzv-endpoint "127.0.0.1:$PORT" --rdzv-id "$RUN_ID" \
    -m mlbench run --run-id "$RUN_ID" --out "$RUN_DIR" "${EXTRA[@]}" \
    > "${RUN_DIR%/}.node$rank.log" 2>&1 &
  pids+=($!)
done
status=0
for i in 0 1; do
  wait "${pids[$i]}"; rc=$?
  echo "node $i exited $rc (log ${RUN_DIR%/}.node$i.log)"
  [ $rc -ne 0 ] && status=$rc
done
exit $status
