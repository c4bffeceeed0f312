"""End to end on CPU: ``examples/run_tiny_cpu.sh`` trains 2 real steps of the whole recipe per estimator.

Drives veRL's v1 trainer through the recipe entrypoint (Ray, TransferQueue, the dataset hook, the agent
loop with the ``<box>`` parser and the region-zoom tool, the recipe's reward, the evidence-scale routing
trainer, FSDP2 actor on gloo, the ``hf`` rollout from ``verl_ext.cpu``) with a tiny Qwen2.5-VL warm-started
to zoom (``verl_ext.testing.tiny_policy``), and checks what the run left behind: veRL's per-step metrics
and rollout dumps, the trainer hook's per-trajectory advantage dumps, the rollout server's weight-sync log
and the actor checkpoint of step 2.

``GROUND_R1_E2E_ESTIMATORS`` picks the estimators (default ``"srpo grpo"``; about 2-3 minutes each on
2 cores, plus about a minute for the warm start).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "examples" / "run_tiny_cpu.sh"
ESTIMATORS = os.environ.get("GROUND_R1_E2E_ESTIMATORS", "srpo grpo").split()
SYNC_LINE = re.compile(r"\[hf-rollout\] replica 0: loaded weights v(\d+) global_steps=(\d+) tensors=\d+ checksum=(\w+)")
#: The zoom tool's answer to a valid call (verl_ext.tools.region_zoom): it comes with the crop as an image.
ZOOM_TEXT = re.compile(
    r"<tool_response>\s*Zoomed in on \[([^\]]*)\] of the (\d+)x(\d+) image\. The new image is that region at "
    r"full resolution: (\d+)x(\d+) pixels of the original\."
)
#: The recipe's reward weights (verl_ext/config/ground_r1_recipe.yaml reward_kwargs).
ANSWER_WEIGHT, FORMAT_WEIGHT = 0.9, 0.1
#: The recipe's three equal-width scale bins as the metrics name them.
BINS = ((0, 0, 33), (1, 33, 67), (2, 67, 100))
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run the demo once for all estimators; its output folder."""
    out = tmp_path_factory.mktemp("tiny_cpu")
    env = {**os.environ, "OUT_DIR": str(out), "ESTIMATORS": " ".join(ESTIMATORS)}
    proc = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, f"run_tiny_cpu.sh failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    (out / "stdout.txt").write_text(proc.stdout)
    return out


def _steps(run: Path, estimator: str) -> dict[int, dict[str, float]]:
    from verl_ext.testing.report import read_steps

    return read_steps(run / estimator / "metrics.jsonl")


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _advantage_dumps(run: Path, estimator: str) -> dict[int, list[dict]]:
    """``{step: rows}`` the trainer hook wrote (``ground_r1.advantage_dump_dir``)."""
    files = sorted((run / estimator / "advantages").glob("step_*.jsonl"))
    return {int(f.stem.split("_")[1]): _jsonl(f) for f in files}


def _rollout_dumps(run: Path, estimator: str) -> dict[int, dict[str, dict]]:
    """``{step: {trajectory key: row}}`` veRL dumped (``trainer.rollout_data_dir``)."""
    files = sorted((run / estimator / "rollouts").glob("*.jsonl"))
    return {int(f.stem): {row["uid"]: row for row in _jsonl(f)} for f in files}


def _weights_checksum(model_dir: Path) -> str:
    """Checksum of a saved model's weights under the module names the rollout server sees."""
    from transformers import AutoModelForImageTextToText

    from verl_ext.cpu.hf_rollout import state_checksum

    model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32)
    return state_checksum(model.state_dict())


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_two_steps_train_and_sync_the_rollout(run: Path, estimator: str) -> None:
    steps = _steps(run, estimator)
    assert sorted(steps) == [1, 2], "both training steps must be logged"
    for step, metrics in steps.items():
        for key in ("critic/score/mean", "critic/advantages/max", "actor/pg_loss", "actor/grad_norm"):
            assert key in metrics, f"step {step}: {key} missing"
        assert metrics["response_length/mean"] > 0
        assert metrics.get("training/rollout_failure/evicted_samples", 0) == 0
    # Some group had a reward spread, so the policy gradient reached the actor.
    assert any(
        m["actor/grad_norm"] > 0 and m["critic/advantages/max"] > 0 > m["critic/advantages/min"] for m in steps.values()
    )

    # The rollout received the actor's weights at start and after each step, each time different.
    log = (run / estimator / "train.log").read_text(errors="replace")
    syncs = [(int(v), int(g), c) for v, g, c in SYNC_LINE.findall(log)]
    assert [(v, g) for v, g, _ in syncs] == [(1, 0), (2, 1), (3, 2)]
    checksums = [c for _, _, c in syncs]
    assert len(set(checksums)) == 3, "every update must change the weights the rollout samples from"

    # Step 1 sampled from the warm-started weights, the checkpoint of step 2 is exactly what the rollout got last.
    assert checksums[0] == _weights_checksum(run / "model")
    assert checksums[2] == _weights_checksum(run / estimator / "ckpt" / "global_step_2" / "actor" / "huggingface")


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_the_policy_zooms_and_the_crops_reach_it(run: Path, estimator: str) -> None:
    """The model wrote <box> calls, the zoom tool cropped them and its turn (crop image + text) was fed back;
    the evidence scale the reward reported is the area of that crop."""
    advantages, rollouts = _advantage_dumps(run, estimator), _rollout_dumps(run, estimator)
    assert sorted(advantages) == sorted(rollouts) == [1, 2]
    zoomed = 0
    for step, rows in advantages.items():
        assert len(rows) == len(rollouts[step]) == 8, "2 prompts x rollout.n=4 per step"
        for row in rows:
            text = rollouts[step][row["key"]]["output"]
            crops = ZOOM_TEXT.findall(text)
            if row["evidence_scale"] < 1.0:
                # A valid zoom: its crop came back inside a tool turn, and the scale is the crop's share of the image.
                assert row["num_zooms"] >= 1 and crops, text
                box, width, height, crop_w, crop_h = crops[0]
                x1, y1, x2, y2 = (float(v) for v in box.split(","))
                assert 0 <= x1 < x2 and 0 <= y1 < y2, box
                assert row["evidence_scale"] == pytest.approx(int(crop_w) * int(crop_h) / (int(width) * int(height)))
                zoomed += 1
            else:
                assert not crops or int(crops[0][3]) * int(crops[0][4]) == int(crops[0][1]) * int(crops[0][2])
            assert row["num_zooms"] >= len(crops)
    assert zoomed >= 2, "the warm-started policy must zoom in on part of the image"


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_rewards_come_from_the_recipe_reward_and_vary(run: Path, estimator: str) -> None:
    """Dumped rewards are the recipe's 0.9 * answer + 0.1 * format, and they vary (the run has a signal)."""
    steps = _steps(run, estimator)
    rewards = []
    for step, rows in _advantage_dumps(run, estimator).items():
        for row in rows:
            format_part = row["reward"] - ANSWER_WEIGHT * row["acc"]
            assert format_part == pytest.approx(0.0, abs=1e-6) or format_part == pytest.approx(FORMAT_WEIGHT)
            rewards.append(row["reward"])
        assert np.mean([r["reward"] for r in rows]) == pytest.approx(steps[step]["critic/score/mean"], abs=1e-5)
    assert len(set(rewards)) >= 2


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_scale_bin_metrics_agree_with_the_step_rewards(run: Path, estimator: str) -> None:
    from verl_ext.algorithms.srpo import scale_bins
    from verl_ext.trainer.diagnostics import bin_label

    steps = _steps(run, estimator)
    for step, rows in _advantage_dumps(run, estimator).items():
        metrics = steps[step]
        scales = torch.tensor([r["evidence_scale"] for r in rows], dtype=torch.float64)
        rewards = np.array([r["reward"] for r in rows])
        bins = scale_bins(scales, 3).numpy()
        assert metrics["scale/evidence_scale_mean"] == pytest.approx(float(scales.mean()))
        for k in range(3):
            label = f"scale/{bin_label(k, 3, None)}"
            assert metrics[f"{label}/share"] == pytest.approx(float((bins == k).mean())), f"step {step} bin {k}"
            if (bins == k).any():
                assert metrics[f"{label}/reward_mean"] == pytest.approx(float(rewards[bins == k].mean()))
            else:
                assert f"{label}/reward_mean" not in metrics
    printed = (run / "stdout.txt").read_text()
    assert "scale/evidence_scale_mean" in printed and "scale/bin0_0-33/share" in printed and "step 2" in printed


def _groups(rows: list[dict]) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        groups[row["uid"]].append(i)
    return groups


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_advantages_equal_the_estimator_recomputed_from_the_step(run: Path, estimator: str) -> None:
    """What the trainer wrote equals SRPO (from the dumped rewards, scales and uids) or veRL's GRPO."""
    from omegaconf import OmegaConf
    from verl.trainer.ppo.core_algos import compute_grpo_outcome_advantage

    from verl_ext.algorithms.srpo import compute_srpo_outcome_advantage, scale_bins
    from verl_ext.config import CONFIG_DIR

    algorithm = OmegaConf.load(CONFIG_DIR / "ground_r1_recipe.yaml").algorithm
    spread_groups = multi_bin_groups = 0
    for step, rows in _advantage_dumps(run, estimator).items():
        rewards = torch.tensor([[r["reward"]] for r in rows], dtype=torch.float32)
        mask = torch.ones_like(rewards)
        uids = np.array([r["uid"] for r in rows], dtype=object)
        scales = np.array([r["evidence_scale"] for r in rows])
        if estimator == "srpo":
            expected, _ = compute_srpo_outcome_advantage(rewards, mask, uids, evidence_scale=scales, config=algorithm)
        else:
            expected, _ = compute_grpo_outcome_advantage(rewards, mask, uids)
        dumped = torch.tensor([r["advantage"] for r in rows])
        torch.testing.assert_close(
            dumped, expected[:, 0].double(), rtol=1e-5, atol=1e-5, check_dtype=False, msg=f"step {step}"
        )
        for members in _groups(rows).values():
            assert len(members) == 4
            spread_groups += len({rows[i]["reward"] for i in members}) > 1
            multi_bin_groups += len(set(scale_bins(torch.tensor(scales[members]), 3).tolist())) > 1
    assert spread_groups >= 1, "no group had a reward spread: the check above compared zeros"
    if estimator == "srpo":
        assert multi_bin_groups >= 1, "no group spread over scale bins: SRPO was not exercised beyond GRPO"


@pytest.fixture(scope="module")
def branching_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo with the paper's two-phase rollout: ground_r1.branch_factor=2 with rollout.n=4, i.e. per prompt 2
    first turns, each continued by 2 answer rollouts; it also validates before training (veRL's real validation
    step)."""
    out = tmp_path_factory.mktemp("tiny_cpu_branching")
    env = {**os.environ, "OUT_DIR": str(out), "ESTIMATORS": "srpo"}
    command = ["bash", str(SCRIPT), "ground_r1.branch_factor=2", "trainer.val_before_train=True"]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, f"run_tiny_cpu.sh (branching) failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return out


def test_branching_siblings_share_first_turn_and_bin_and_srpo_holds(branching_run: Path) -> None:
    """Each follower (odd session) continues its leader's first turn, token for token in the decoded text, and
    shares its evidence scale when that first zoom was valid; the dumped advantages are SRPO on those scales."""
    from omegaconf import OmegaConf

    from verl_ext.algorithms.routing import parse_key
    from verl_ext.algorithms.srpo import compute_srpo_outcome_advantage
    from verl_ext.config import CONFIG_DIR

    algorithm = OmegaConf.load(CONFIG_DIR / "ground_r1_recipe.yaml").algorithm
    advantages, rollouts = _advantage_dumps(branching_run, "srpo"), _rollout_dumps(branching_run, "srpo")
    assert sorted(advantages) == sorted(rollouts) == [1, 2]
    shared_first_turns = shared_scales = 0
    for step, rows in advantages.items():
        by_key = {row["key"]: row for row in rows}
        for row in rows:
            uid, session, index = parse_key(row["key"])
            if int(session) % 2 == 0:
                continue
            leader = by_key[f"{uid}_{int(session) - 1}_{index}"]
            leader_text, text = rollouts[step][leader["key"]]["output"], rollouts[step][row["key"]]["output"]
            end = leader_text.find("</tool_response>")
            if end < 0:
                continue  # the leader answered at once: its first turn is not shared (docs/design.md)
            prefix = leader_text[: end + len("</tool_response>")]
            assert text.startswith(prefix), f"step {step}: {row['key']} did not continue {leader['key']}"
            shared_first_turns += 1
            if ZOOM_TEXT.search(prefix):
                assert row["evidence_scale"] == leader["evidence_scale"]
                shared_scales += 1
        rewards = torch.tensor([[r["reward"]] for r in rows], dtype=torch.float32)
        uids = np.array([r["uid"] for r in rows], dtype=object)
        scales = np.array([r["evidence_scale"] for r in rows])
        expected, _ = compute_srpo_outcome_advantage(
            rewards, torch.ones_like(rewards), uids, evidence_scale=scales, config=algorithm
        )
        dumped = torch.tensor([r["advantage"] for r in rows], dtype=torch.float64)
        torch.testing.assert_close(dumped, expected[:, 0].double(), rtol=1e-5, atol=1e-5, msg=f"step {step}")
        assert "branch/follower_share" in _steps(branching_run, "srpo")[step]
    assert shared_first_turns >= 1 and shared_scales >= 1, "no follower continued a zoomed first turn"


def test_validation_logs_the_harness_metrics_next_to_verls(branching_run: Path) -> None:
    """veRL's validation step in the real trainer carries the evaluation harness's metrics (same functions)."""
    validation = _steps(branching_run, "srpo")[0]
    # The tiny rows have no option-rotation cycles: the harness's accuracy is veRL's mean over the questions.
    assert validation["val-core/visual_cot/acc"] == pytest.approx(validation["val-core/visual_cot/acc/mean@1"])
    assert validation["val-aux/visual_cot/n"] >= 1 and validation["val-aux/visual_cot/failed"] == 0
    shares = [validation[f"val-aux/visual_cot/scale/bin{k}_{lo}-{hi}/share"] for k, lo, hi in BINS]
    assert sum(shares) == pytest.approx(1.0) and validation["val-aux/visual_cot/zooms_per_question"] >= 0
