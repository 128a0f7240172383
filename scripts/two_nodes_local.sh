#!/usr/bin/env bash
# Simulate a two-node collectives run on one machine: two torchrun launches on localhost, node rank
# 0 and 1, meeting at a c10d rendezvous on 127.0.0.1 (the same rendezvous a real multi-node job
# uses, see scripts/slurm_collectives.sbatch). Rank 0 (node 0) writes the records.
#
#   scripts/two_nodes_local.sh [NPROC_PER_NODE] [mlbench collectives options...]
#   scripts/two_nodes_local.sh 1 --quick --out results/two-nodes/collectives.jsonl
#
# Environment: PYTHON (default: .venv/bin/python if present, else python3), PORT (default: a free
# port), MLBENCH_RUN_ID (default: one id shared by both "nodes"). Exit code: the worse of the two.
set -u
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
NPROC=${1:-1}
[ $# -gt 0 ] && shift
PORT=${PORT:-$("$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
export MLBENCH_RUN_ID=${MLBENCH_RUN_ID:-$(date -u +%Y%m%dT%H%M%SZ)-twonodes-$$}
# gloo must find an interface that reaches 127.0.0.1 on both "nodes"
export GLOO_SOCKET_IFNAME=${GLOO_SOCKET_IFNAME:-lo}

launch() {  # $1 = node rank, then the mlbench collectives options
    local node=$1
    shift
    "$PYTHON" -m torch.distributed.run --nnodes 2 --node-rank "$node" --nproc-per-node "$NPROC" \
        --rdzv-backend c10d --rdzv-endpoint "127.0.0.1:$PORT" --rdzv-id "$MLBENCH_RUN_ID" \
        --local-addr 127.0.0.1 -m mlbench.collectives "$@"
}

launch 0 "$@" & node0=$!
launch 1 "$@" & node1=$!
trap 'kill $node0 $node1 2>/dev/null' INT TERM
wait $node0; rc0=$?
wait $node1; rc1=$?
echo "two_nodes_local: node 0 exited $rc0, node 1 exited $rc1" >&2
exit $(( rc0 > rc1 ? rc0 : rc1 ))
