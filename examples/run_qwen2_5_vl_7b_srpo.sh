#!/usr/bin/env bash
# Ground-R1 with SRPO on Qwen2.5-VL-7B-Instruct: FSDP actor + vLLM async rollout with the region-zoom tool.
# The paper's settings are the defaults (docs/design.md, section 3). Every extra argument is a hydra override:
#
#   bash examples/run_qwen2_5_vl_7b_srpo.sh                                  # SRPO
#   bash examples/run_qwen2_5_vl_7b_srpo.sh algorithm.adv_estimator=grpo     # the GRPO baseline
#   bash examples/run_qwen2_5_vl_7b_srpo.sh --help                           # what it needs
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: bash examples/run_qwen2_5_vl_7b_srpo.sh [hydra overrides ...]

Trains Qwen2.5-VL-7B-Instruct with SRPO (algorithm.adv_estimator=srpo; pass
algorithm.adv_estimator=grpo for the baseline) through recipe/ground_r1/main_ground_r1.py.

Needs:
  * NVIDIA GPUs visible to nvidia-smi (GPUS_PER_NODE on each of NNODES nodes)
  * the GPU stack:   pip install -e ".[gpu]"   (veRL's vllm + fsdp extras)
  * training data:   python data_prep/deepeyes_to_parquet.py --input <DeepEyes parquet files> --out $DATA_DIR/deepeyes
  * validation data: python data_prep/vstar_to_parquet.py ... --out $DATA_DIR/eval
                     python data_prep/hr_bench_to_parquet.py --tsv hr_bench_4k.tsv --out $DATA_DIR/eval

Environment (defaults in brackets):
  MODEL_PATH     [Qwen/Qwen2.5-VL-7B-Instruct]   local folder or Hugging Face id
  DATA_DIR       [$HOME/data/ground_r1]
  TRAIN_FILES    [$DATA_DIR/deepeyes/*.parquet]   comma-separated parquet files
  VAL_FILES      [$DATA_DIR/eval/vstar.parquet,$DATA_DIR/eval/hr_bench_4k.parquet,$DATA_DIR/eval/hr_bench_8k.parquet]
  NNODES         [1]      nodes; with NNODES > 1 start Ray on every node first and set RAY_ADDRESS
  GPUS_PER_NODE  [8]
  RAY_ADDRESS    []       address of a running Ray cluster (multi-node)
  PROJECT_NAME   [ground_r1]   EXPERIMENT_NAME [qwen2_5_vl_7b_<estimator>]
  PRINT_OVERRIDES=1       print the hydra overrides, one per line, and exit (no checks, no Ray)
USAGE
}

for arg in "$@"; do
  case "$arg" in -h|--help) usage; exit 0 ;; esac
done

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MODEL_PATH=${MODEL_PATH:-Qwen/Qwen2.5-VL-7B-Instruct}
DATA_DIR=${DATA_DIR:-$HOME/data/ground_r1}
if [ -z "${TRAIN_FILES:-}" ]; then
  TRAIN_FILES=$(ls "$DATA_DIR"/deepeyes/*.parquet 2>/dev/null | paste -sd, - || true)
fi
VAL_FILES=${VAL_FILES:-$DATA_DIR/eval/vstar.parquet,$DATA_DIR/eval/hr_bench_4k.parquet,$DATA_DIR/eval/hr_bench_8k.parquet}
NNODES=${NNODES:-1}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
ESTIMATOR=srpo
for arg in "$@"; do
  case "$arg" in algorithm.adv_estimator=*) ESTIMATOR=${arg#algorithm.adv_estimator=} ;; esac
done
PROJECT_NAME=${PROJECT_NAME:-ground_r1}
EXPERIMENT_NAME=${EXPERIMENT_NAME:-qwen2_5_vl_7b_${ESTIMATOR}}

# The paper: 8 prompts x 8 rollouts, lr 1e-6, temperature 1, 512 tokens per turn, at most 5 rounds
# (4 zooms + the answer), K=3 scale bins, 1000 steps; no KL term (no reference model). The pixel bounds
# (min 3136, max 401408), rollout.n=8 and limit_images=5 are the recipe's own (verl_ext/config/ground_r1_recipe.yaml):
# override data.max_pixels on the command line and the dataset, the zoom tool and the reward all follow.
OVERRIDES=(
  "algorithm.adv_estimator=srpo"
  "algorithm.srpo.num_bins=3"
  "data.train_files=[${TRAIN_FILES}]"
  "data.val_files=[${VAL_FILES}]"
  "data.train_batch_size=8"
  "data.max_prompt_length=2048"
  "data.max_response_length=4096"
  "data.filter_overlong_prompts=true"
  "actor_rollout_ref.model.path=${MODEL_PATH}"
  "actor_rollout_ref.model.use_remove_padding=true"
  "actor_rollout_ref.model.enable_gradient_checkpointing=true"
  "actor_rollout_ref.actor.strategy=fsdp2"
  "actor_rollout_ref.actor.optim.lr=1e-6"
  "actor_rollout_ref.actor.ppo_mini_batch_size=8"
  "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=1"
  "actor_rollout_ref.actor.use_kl_loss=false"
  "actor_rollout_ref.actor.entropy_coeff=0"
  "actor_rollout_ref.actor.fsdp_config.param_offload=false"
  "actor_rollout_ref.rollout.name=vllm"
  "actor_rollout_ref.rollout.mode=async"
  "actor_rollout_ref.rollout.temperature=1.0"
  "actor_rollout_ref.rollout.tensor_model_parallel_size=2"
  "actor_rollout_ref.rollout.gpu_memory_utilization=0.6"
  "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=2"
  "actor_rollout_ref.rollout.multi_turn.max_assistant_turns=5"
  "actor_rollout_ref.rollout.multi_turn.max_tool_response_length=512"
  "trainer.n_gpus_per_node=${GPUS_PER_NODE}"
  "trainer.nnodes=${NNODES}"
  "trainer.total_training_steps=1000"
  "trainer.save_freq=100"
  "trainer.test_freq=50"
  "trainer.val_before_train=true"
  "trainer.logger=[console,wandb]"
  "trainer.project_name=${PROJECT_NAME}"
  "trainer.experiment_name=${EXPERIMENT_NAME}"
)

. "$ROOT/examples/lib/preflight.sh"
print_overrides_if_asked "${OVERRIDES[@]}" "$@"

if ! command -v nvidia-smi >/dev/null 2>&1; then
  missing+=("no nvidia-smi: this launch needs NVIDIA GPUs (on a CPU machine run: bash examples/run_tiny_cpu.sh)")
else
  visible=$(nvidia-smi --list-gpus 2>/dev/null | wc -l)
  if [ "$visible" -lt "$GPUS_PER_NODE" ]; then
    missing+=("$visible GPU(s) visible, GPUS_PER_NODE=$GPUS_PER_NODE (set GPUS_PER_NODE to what this node has)")
  fi
fi
[ -n "$TRAIN_FILES" ] || missing+=("no training data: no parquet in $DATA_DIR/deepeyes (set TRAIN_FILES or run data_prep/deepeyes_to_parquet.py)")
require_files "data file" "${TRAIN_FILES},${VAL_FILES}"
if [[ "$MODEL_PATH" == /* || "$MODEL_PATH" == .* ]] && [ ! -f "$MODEL_PATH/config.json" ]; then
  missing+=("model folder without config.json: $MODEL_PATH")
fi
python3 -c "import vllm" 2>/dev/null || missing+=("vllm is not installed: pip install -e \".[gpu]\"")
python3 -c "import verl_ext" 2>/dev/null || missing+=("this project is not installed: pip install -e \".[gpu]\"")
if [ "$NNODES" -gt 1 ] && [ -z "${RAY_ADDRESS:-}" ]; then
  missing+=("NNODES=$NNODES needs a running Ray cluster: 'ray start --head' here, 'ray start --address=...' on the others, then RAY_ADDRESS=<head>:6379")
fi
stop_if_missing run_qwen2_5_vl_7b_srpo.sh "See: bash examples/run_qwen2_5_vl_7b_srpo.sh --help"

cd "$ROOT"
exec python3 -m recipe.ground_r1.main_ground_r1 "${OVERRIDES[@]}" "$@"
