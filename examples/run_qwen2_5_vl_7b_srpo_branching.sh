#!/usr/bin/env bash
# The paper's two-phase rollout: per prompt G1 = 4 first turns (box and crop), each continued by G2 = 2 answer
# rollouts (rollout.n = G1 * G2 = 8); the two answers that share a box share its SRPO scale bin.
#
#   bash examples/run_qwen2_5_vl_7b_srpo_branching.sh [hydra overrides ...]
#
# Everything else is examples/run_qwen2_5_vl_7b_srpo.sh (same environment variables, same checks); this script
# only sets G2 and the group size and calls it: ground_r1.branch_factor=G2 and rollout.n=G1*G2 (G1, G2: environment,
# default 4 and 2). G2 is a run setting: the config carries it to every agent-loop worker, on every node, so a
# multi-node run (NNODES > 1) needs nothing of it at 'ray start'.
set -euo pipefail

for arg in "$@"; do
  case "$arg" in
    -h|--help)
      sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
  esac
done

G1=${G1:-4}
G2=${G2:-2}
export EXPERIMENT_NAME=${EXPERIMENT_NAME:-qwen2_5_vl_7b_srpo_branch_g${G1}x${G2}}

exec bash "$(dirname "${BASH_SOURCE[0]}")/run_qwen2_5_vl_7b_srpo.sh" \
  "ground_r1.branch_factor=$G2" \
  "actor_rollout_ref.rollout.n=$((G1 * G2))" \
  "$@"
