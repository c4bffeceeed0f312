"""End to end on CPU: ``examples/run_tiny_cpu.sh`` trains 2 real steps of the recipe per estimator.

Drives veRL's v1 trainer through the recipe entrypoint (Ray, TransferQueue, agent loop, reward loop,
FSDP2 actor on gloo, the ``hf`` rollout from ``verl_ext.cpu``) and checks what the run left behind:
veRL's per-step metrics, the rollout server's weight-sync log and the actor checkpoint of step 2.

``GROUND_R1_E2E_ESTIMATORS`` picks the estimators (default ``"srpo grpo"``; about 2 minutes each on
2 cores).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "examples" / "run_tiny_cpu.sh"
ESTIMATORS = os.environ.get("GROUND_R1_E2E_ESTIMATORS", "srpo grpo").split()
SYNC_LINE = re.compile(r"\[hf-rollout\] replica 0: loaded weights v(\d+) global_steps=(\d+) tensors=\d+ checksum=(\w+)")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run the demo once for all estimators; its output folder."""
    out = tmp_path_factory.mktemp("tiny_cpu")
    env = {**os.environ, "OUT_DIR": str(out), "ESTIMATORS": " ".join(ESTIMATORS)}
    proc = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, f"run_tiny_cpu.sh failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    (out / "stdout.txt").write_text(proc.stdout)
    return out


def _weights_checksum(model_dir: Path) -> str:
    """Checksum of a saved model's weights under the module names the rollout server sees."""
    import torch
    from transformers import AutoModelForImageTextToText

    from verl_ext.cpu.hf_rollout import state_checksum

    model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32)
    return state_checksum(model.state_dict())


@pytest.mark.e2e
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_two_steps_train_and_sync_the_rollout(run: Path, estimator: str) -> None:
    from verl_ext.cpu.report import read_steps

    steps = read_steps(run / estimator / "metrics.jsonl")
    assert sorted(steps) == [1, 2], "both training steps must be logged"
    for step, metrics in steps.items():
        for key in ("critic/score/mean", "critic/advantages/max", "actor/pg_loss", "actor/grad_norm"):
            assert key in metrics, f"step {step}: {key} missing"
        assert metrics["actor/grad_norm"] > 0, f"step {step}: no gradient reached the actor"
        assert metrics["response_length/mean"] > 0
        # GRPO-family advantages are normalised within each group: they spread around zero.
        assert metrics["critic/advantages/max"] > 0 > metrics["critic/advantages/min"]
        assert metrics.get("training/rollout_failure/evicted_samples", 0) == 0

    # The rollout received the actor's weights at start and after each step, each time different.
    log = (run / estimator / "train.log").read_text(errors="replace")
    syncs = [(int(v), int(g), c) for v, g, c in SYNC_LINE.findall(log)]
    assert [(v, g) for v, g, _ in syncs] == [(1, 0), (2, 1), (3, 2)]
    checksums = [c for _, _, c in syncs]
    assert len(set(checksums)) == 3, "every update must change the weights the rollout samples from"

    # Step 1 sampled from the initial weights, the checkpoint of step 2 is exactly what the rollout got last.
    assert checksums[0] == _weights_checksum(run / "model")
    assert checksums[2] == _weights_checksum(run / estimator / "ckpt" / "global_step_2" / "actor" / "huggingface")


@pytest.mark.e2e
@pytest.mark.timeout(1800)
@pytest.mark.skipif("srpo" not in ESTIMATORS, reason="SRPO not run")
def test_srpo_bin_metrics_agree_with_the_step_rewards(run: Path) -> None:
    from verl_ext.cpu.report import read_steps

    for step, metrics in read_steps(run / "srpo" / "metrics.jsonl").items():
        shares = {k[: -len("/share")]: v for k, v in metrics.items() if k.startswith("scale/") and k.endswith("/share")}
        assert shares, f"step {step}: no per-bin metrics"
        assert sum(shares.values()) == pytest.approx(1.0)
        weighted = sum(share * metrics[f"{b}/reward_mean"] for b, share in shares.items() if share > 0)
        assert weighted == pytest.approx(metrics["critic/score/mean"], rel=1e-4)
    printed = (run / "stdout.txt").read_text()
    assert "scale/evidence_scale_mean" in printed and "step 2" in printed
