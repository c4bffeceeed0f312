#!/usr/bin/env bash
# Evaluate a Qwen2.5-VL-7B checkpoint on V*, HR-Bench 4K/8K (and RefCOCO-family, VQA sets) with the training loop
# itself: the recipe's agent loop, zoom tool, <box> parser, prompts, pixel and turn limits and reward.
#
#   CKPT=/ckpt/global_step_1000/actor bash examples/eval_qwen2_5_vl_7b.sh          # veRL actor checkpoint (merged first)
#   CKPT=Qwen/Qwen2.5-VL-7B-Instruct bash examples/eval_qwen2_5_vl_7b.sh          # an HF model folder or id
#   bash examples/eval_qwen2_5_vl_7b.sh eval.n=4 actor_rollout_ref.rollout.val_kwargs.temperature=1.0   # mean@4
#   bash examples/eval_qwen2_5_vl_7b.sh --help
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: CKPT=<checkpoint> bash examples/eval_qwen2_5_vl_7b.sh [hydra overrides ...]

Runs python -m recipe.ground_r1.main_eval with eval.backend=vllm: veRL's standalone vLLM replicas load the
checkpoint from disk (rollout.load_format=auto), one per TP group on this node's GPUs. Results in OUT_DIR:
summary.json, summary.md (printed at the end), trajectories.jsonl, report.html. Rerunning with the same OUT_DIR
resumes (finished questions are skipped; failed ones are retried).

CKPT may be
  * a Hugging Face model folder (config.json + weights) or a Hub id, used as is;
  * a veRL FSDP actor checkpoint (<default_local_dir>/global_step_<N>/actor, holding model_world_size_*_rank_*.pt):
    it is merged once with veRL's own merger into <CKPT>/huggingface_merged:
      python -m verl.model_merger merge --backend fsdp --local_dir <CKPT> --target_dir <CKPT>/huggingface_merged

Needs:
  * NVIDIA GPUs (GPUS_PER_NODE), the GPU stack: pip install -e ".[gpu]"
  * eval data from the converters, e.g.
      python data_prep/vstar_to_parquet.py --root vstar_bench --out $DATA_DIR/eval
      python data_prep/hr_bench_to_parquet.py --tsv hr_bench_4k.tsv --out $DATA_DIR/eval
      python data_prep/hr_bench_to_parquet.py --tsv hr_bench_8k.tsv --out $DATA_DIR/eval
      python data_prep/refcoco_to_parquet.py --refer-root refer/data --image-root coco/train2014 --dataset refcoco --out $DATA_DIR/refcoco

Environment (defaults in brackets):
  CKPT           [Qwen/Qwen2.5-VL-7B-Instruct]
  DATA_DIR       [$HOME/data/ground_r1]
  VAL_FILES      [$DATA_DIR/eval/vstar.parquet,$DATA_DIR/eval/hr_bench_4k.parquet,$DATA_DIR/eval/hr_bench_8k.parquet]
  OUT_DIR        [$HOME/eval/<checkpoint name>]
  GPUS_PER_NODE  [8]     TP [1] (tensor parallel size per replica)
  PRINT_OVERRIDES=1      print the hydra overrides and exit (no checks)
USAGE
}

for arg in "$@"; do
  case "$arg" in -h|--help) usage; exit 0 ;; esac
done

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CKPT=${CKPT:-Qwen/Qwen2.5-VL-7B-Instruct}
DATA_DIR=${DATA_DIR:-$HOME/data/ground_r1}
VAL_FILES=${VAL_FILES:-$DATA_DIR/eval/vstar.parquet,$DATA_DIR/eval/hr_bench_4k.parquet,$DATA_DIR/eval/hr_bench_8k.parquet}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
TP=${TP:-1}
NAME=$(echo "${CKPT%/}" | awk -F/ '{print ($NF == "actor" && NF > 1) ? $(NF-1) : $NF}')
OUT_DIR=${OUT_DIR:-$HOME/eval/$NAME}

MODEL_PATH=$CKPT
if [ -d "$CKPT" ] && ls "$CKPT"/model_world_size_*_rank_0.pt >/dev/null 2>&1; then
  MODEL_PATH=$CKPT/huggingface_merged
fi

# The recipe's loop settings are the training ones (config/ground_r1.yaml): pixel bounds, 5 rounds, 512 tokens per
# turn, the <box> protocol. Greedy decoding (rollout.val_kwargs) unless overridden.
OVERRIDES=(
  "actor_rollout_ref.model.path=${MODEL_PATH}"
  "data.val_files=[${VAL_FILES}]"
  "data.max_prompt_length=4096"
  "data.max_response_length=4096"
  "actor_rollout_ref.rollout.name=vllm"
  "actor_rollout_ref.rollout.mode=async"
  "actor_rollout_ref.rollout.tensor_model_parallel_size=${TP}"
  "actor_rollout_ref.rollout.gpu_memory_utilization=0.85"
  "actor_rollout_ref.rollout.agent.num_workers=8"
  "trainer.n_gpus_per_node=${GPUS_PER_NODE}"
  "trainer.nnodes=1"
  "eval.backend=vllm"
  "eval.out_dir=${OUT_DIR}"
  "eval.max_concurrency=64"
)

. "$ROOT/examples/lib/preflight.sh"
print_overrides_if_asked "${OVERRIDES[@]}" "$@"

if ! command -v nvidia-smi >/dev/null 2>&1; then
  missing+=("no nvidia-smi: the vllm back end needs NVIDIA GPUs (elsewhere: eval.backend=openai against a served model)")
fi
require_files "eval file" "$VAL_FILES" "run the data_prep converter, or set VAL_FILES"
python3 -c "import vllm" 2>/dev/null || missing+=("vllm is not installed: pip install -e \".[gpu]\"")
stop_if_missing eval_qwen2_5_vl_7b.sh

cd "$ROOT"
if [ "$MODEL_PATH" != "$CKPT" ] && [ ! -f "$MODEL_PATH/config.json" ]; then
  echo "[eval] merging the FSDP actor checkpoint $CKPT into $MODEL_PATH (veRL's model merger)"
  python3 -m verl.model_merger merge --backend fsdp --local_dir "$CKPT" --target_dir "$MODEL_PATH"
fi
exec python3 -m recipe.ground_r1.main_eval "${OVERRIDES[@]}" "$@"
