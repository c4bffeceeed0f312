#!/usr/bin/env bash
# One-GPU smoke of the real recipe: the 7B launch path (FSDP2 actor, vLLM async rollout, zoom tool, reward
# loop, SRPO) with a tiny Qwen2.5-VL and a generated image VQA set, a few steps per estimator.
#
#   bash examples/smoke_gpu.sh                 # SRPO then GRPO, 3 steps each
#   ESTIMATORS=srpo STEPS=5 bash examples/smoke_gpu.sh
#
# Prints what ran and each step's metrics; exits non-zero (with the log's tail) on any failure.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT_DIR=${OUT_DIR:-$(mktemp -d -t ground_r1_smoke_gpu.XXXXXX)}
ESTIMATORS=${ESTIMATORS:-srpo grpo}
STEPS=${STEPS:-3}
PYTHON=${PYTHON:-python3}

cd "$ROOT"
echo "[smoke_gpu] output: $OUT_DIR"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || { echo "[smoke_gpu] no GPU visible" >&2; exit 2; }
"$PYTHON" -c "import torch, vllm, verl; print(f'[smoke_gpu] torch {torch.__version__} vllm {vllm.__version__} verl {verl.__version__} cuda {torch.cuda.is_available()}')"
# The tiny policy (warm-started on CPU to speak the <box> zoom protocol, so the tool runs) and data.
. "$ROOT/examples/lib/tiny_assets.sh"
build_tiny_assets "$OUT_DIR" 16 smoke_gpu

for estimator in $ESTIMATORS; do
    run_dir="$OUT_DIR/$estimator"
    mkdir -p "$run_dir"
    echo "[smoke_gpu] $STEPS steps with algorithm.adv_estimator=$estimator (log: $run_dir/train.log)"
    start=$(date +%s)
    GPUS_PER_NODE=1 NNODES=1 MODEL_PATH="$OUT_DIR/model" \
    TRAIN_FILES="$OUT_DIR/data/train.parquet" VAL_FILES="$OUT_DIR/data/train.parquet" \
    VERL_FILE_LOGGER_PATH="$run_dir/metrics.jsonl" \
    bash "$ROOT/examples/run_qwen2_5_vl_7b_srpo.sh" \
        algorithm.adv_estimator="$estimator" \
        data.train_batch_size=4 \
        data.max_prompt_length="$PROMPT_LENGTH" \
        data.max_response_length="$RESPONSE_LENGTH" \
        data.min_pixels="$MIN_PIXELS" \
        data.max_pixels="$MAX_PIXELS" \
        actor_rollout_ref.actor.ppo_mini_batch_size=4 \
        actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=4 \
        actor_rollout_ref.model.enable_gradient_checkpointing=false \
        actor_rollout_ref.rollout.n=4 \
        actor_rollout_ref.rollout.tensor_model_parallel_size=1 \
        actor_rollout_ref.rollout.gpu_memory_utilization=0.3 \
        actor_rollout_ref.rollout.agent.num_workers=2 \
        trainer.total_training_steps="$STEPS" \
        trainer.save_freq=-1 \
        trainer.test_freq=-1 \
        trainer.val_before_train=false \
        trainer.logger=[console,file] \
        trainer.project_name=ground_r1_smoke_gpu \
        trainer.experiment_name="$estimator" \
        trainer.default_local_dir="$run_dir/ckpt" \
        ground_r1.advantage_dump_dir="$run_dir/advantages" \
        "$@" >"$run_dir/train.log" 2>&1 || {
        echo "[smoke_gpu] FAILED: $estimator; last lines of $run_dir/train.log:" >&2
        tail -n 60 "$run_dir/train.log" >&2
        exit 1
    }
    echo "[smoke_gpu] $estimator: $STEPS steps in $(($(date +%s) - start)) s"
    "$PYTHON" -m verl_ext.testing.report "$run_dir/metrics.jsonl" --advantages "$run_dir/advantages"
    grep -q '"scale/evidence_scale_mean"' "$run_dir/metrics.jsonl" || {
        echo "[smoke_gpu] FAILED: no scale/* metrics logged" >&2
        exit 1
    }
done
echo "[smoke_gpu] OK"
