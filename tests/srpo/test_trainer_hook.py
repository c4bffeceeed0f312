"""The recipe's trainer hook inside veRL's real v1 advantage step, on a real TransferQueue (local Ray)."""

from __future__ import annotations

import json
import os
import random

import numpy as np
import pytest
import ray
import torch
import transfer_queue as tq
from hydra import compose, initialize_config_dir
from tensordict import NonTensorStack, TensorDict

from verl_ext.algorithms.srpo import SRPOConfigError, compute_srpo_outcome_advantage
from verl_ext.trainer.diagnostics import bin_label
from verl_ext.trainer.ground_r1_trainer import GroundR1TrainerSync, ValidationRows

CONFIG_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "recipe", "ground_r1", "config")


@pytest.fixture(scope="module")
def transfer_queue():
    ray.init(num_cpus=8, include_dashboard=False, log_to_driver=False)
    tq.init({"backend": {"SimpleStorage": {"num_data_storage_units": 1}}})
    yield
    tq.close()
    ray.shutdown()


def trainer(estimator: str, *overrides: str) -> GroundR1TrainerSync:
    """The real trainer class without its workers: only the advantage step runs."""
    with initialize_config_dir(config_dir=os.path.abspath(CONFIG_DIR), version_base=None):
        config = compose(config_name="ground_r1", overrides=[f"algorithm.adv_estimator={estimator}", *overrides])
    t = GroundR1TrainerSync.__new__(GroundR1TrainerSync)
    t.config = config
    t.global_steps = 7
    return t


def put_rollouts(partition: str, keys, rewards, scales, accs, lengths, more_infos=None, more_fields=None):
    """Store rollouts as the v1 agent loop does: nested per-token fields, reward extra info in extra_fields."""
    rm_scores, masks = [], []
    for reward, length in zip(rewards, lengths, strict=True):
        score = torch.zeros(length)
        score[-1] = reward
        rm_scores.append(score)
        masks.append(torch.ones(length, dtype=torch.int64))
    extra = [
        {"reward_extra_info": {"evidence_scale": s, "acc": a, "score": r, **more}, **fields}
        for s, a, r, more, fields in zip(
            scales, accs, rewards, more_infos or [{}] * len(keys), more_fields or [{}] * len(keys), strict=True
        )
    ]
    fields = TensorDict(
        {
            "uid": NonTensorStack(*[k.split("_")[0] for k in keys]),
            "rm_scores": torch.nested.as_nested_tensor(rm_scores, layout=torch.jagged),
            "response_mask": torch.nested.as_nested_tensor(masks, layout=torch.jagged),
            "extra_fields": NonTensorStack(*extra),
        },
        batch_size=len(keys),
    )
    return tq.kv_batch_put(keys=list(keys), partition_id=partition, fields=fields)


def scalar_advantages(batch) -> dict[str, float]:
    out = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=["advantages"])
    return {k: float(row[0]) for k, row in zip(batch.keys, out["advantages"].unbind(), strict=True)}


def test_scales_reach_srpo_aligned_with_scrambled_keys(transfer_queue, tmp_path):
    rng = random.Random(0)
    uids = ["p0", "p1", "p2"]
    keys = [f"{u}_{s}_0" for u in uids for s in range(6)]
    rewards = {k: rng.choice([0.0, 1.0]) for k in keys}
    scales = {k: rng.random() for k in keys}
    accs = {k: rewards[k] for k in keys}
    stored = keys[:]
    rng.shuffle(stored)
    put_rollouts(
        "train",
        stored,
        [rewards[k] for k in stored],
        [scales[k] for k in stored],
        [accs[k] for k in stored],
        [rng.randint(2, 7) for _ in stored],
    )
    scrambled = keys[:]
    rng.shuffle(scrambled)
    assert scrambled != stored
    batch = tq.kv_batch_put(keys=scrambled, partition_id="train", tags=[{}] * len(scrambled))

    metrics: dict = {}
    batch = trainer("srpo", f"ground_r1.advantage_dump_dir={tmp_path}")._compute_advantage(batch, metrics)
    got = scalar_advantages(batch)

    dumped = {row["key"]: row for row in map(json.loads, (tmp_path / "step_000007.jsonl").read_text().splitlines())}
    assert set(dumped) == set(keys)
    for k in keys:
        assert dumped[k]["reward"] == rewards[k] and dumped[k]["evidence_scale"] == pytest.approx(scales[k])
        assert dumped[k]["advantage"] == pytest.approx(got[k], abs=1e-6) and dumped[k]["uid"] == k.split("_")[0]

    tl = torch.tensor([[rewards[k]] for k in keys])
    expected, _ = compute_srpo_outcome_advantage(
        tl,
        torch.ones_like(tl),
        np.array([k.split("_")[0] for k in keys], dtype=object),
        evidence_scale=[scales[k] for k in keys],
    )
    for k, e in zip(keys, expected[:, 0].tolist(), strict=True):
        assert got[k] == pytest.approx(e, abs=1e-5), k

    # The diagnostics agree with the rows of this step.
    bins = [min(int(3 * scales[k]), 2) for k in keys]
    for b in range(3):
        members = [k for k, kb in zip(keys, bins, strict=True) if kb == b]
        label = bin_label(b, 3, None)
        assert metrics[f"scale/{label}/share"] == pytest.approx(len(members) / len(keys))
        if members:
            assert metrics[f"scale/{label}/reward_mean"] == pytest.approx(np.mean([rewards[k] for k in members]))
            assert metrics[f"scale/{label}/acc"] == pytest.approx(np.mean([accs[k] for k in members]))
            assert metrics[f"scale/{label}/adv_mean"] == pytest.approx(np.mean([got[k] for k in members]), abs=1e-5)
    assert metrics["scale/evidence_scale_mean"] == pytest.approx(np.mean(list(scales.values())))


def test_grpo_runs_unchanged_and_still_logs_the_scale_bins(transfer_queue):
    keys = [f"q_{s}_0" for s in range(4)]
    rewards, scales = [1.0, 0.0, 1.0, 1.0], [0.05, 0.1, 0.9, 0.95]
    batch = put_rollouts("grpo", keys, rewards, scales, rewards, [3, 3, 3, 3])
    metrics: dict = {}
    batch = trainer("grpo")._compute_advantage(batch, metrics)
    got = scalar_advantages(batch)
    std = float(np.std(rewards, ddof=1))
    for k, r in zip(keys, rewards, strict=True):
        assert got[k] == pytest.approx((r - 0.75) / (std + 1e-6), abs=1e-5)
    # GRPO's bias in numbers: the small-scale bin carries the negative mean advantage.
    assert metrics["scale/bin0_0-33/adv_mean"] < 0 < metrics["scale/bin2_67-100/adv_mean"]


def _without_scales(partition: str, second_info: dict):
    keys = [f"{partition}_{s}_0" for s in range(2)]
    fields = TensorDict(
        {
            "uid": NonTensorStack(partition, partition),
            "rm_scores": torch.nested.as_nested_tensor([torch.ones(2), torch.zeros(2)], layout=torch.jagged),
            "response_mask": torch.nested.as_nested_tensor([torch.ones(2, dtype=torch.int64)] * 2, layout=torch.jagged),
            "extra_fields": NonTensorStack({"reward_extra_info": {"acc": 1.0}}, {"reward_extra_info": second_info}),
        },
        batch_size=2,
    )
    return tq.kv_batch_put(keys=keys, partition_id=partition, fields=fields)


@pytest.mark.parametrize("second_info", [{"acc": 0.0}, {"acc": 0.0, "evidence_scale": float("nan")}])
def test_srpo_refuses_rows_without_evidence_scales_and_names_them(transfer_queue, second_info):
    batch = _without_scales("noscale" + str(len(second_info)), second_info)
    with pytest.raises(SRPOConfigError, match="rows \\[0, 1\\] of this batch have no finite 'evidence_scale'"):
        trainer("srpo")._compute_advantage(batch, {})


def test_grpo_with_a_reward_without_scales_trains_and_skips_the_bin_view(transfer_queue):
    metrics: dict = {}
    batch = trainer("grpo")._compute_advantage(_without_scales("grpo_noscale", {"acc": 0.0}), metrics)
    got = scalar_advantages(batch)
    assert got["grpo_noscale_0_0"] > 0 > got["grpo_noscale_1_0"]
    assert not any(name.startswith("scale/") for name in metrics)


def test_validation_carries_the_harness_metrics_with_hr_bench_cycles():
    """veRL's validation step, extended: HR-Bench accuracy is averaged over option-rotation cycles, not pooled."""
    t = trainer("srpo")
    uids = ["q1", "q2", "q3", "q4", "q5"]
    cycles, categories = ["c1", "c1", "c1", "c1", "c2"], ["single", "single", "cross", "cross", "single"]
    acc = [1.0, 1.0, 1.0, 0.0, 0.0]  # cycle c1: 3/4, cycle c2: 0/1 -> cycle mean 0.375, pooled 0.6
    batch = {
        "uid": np.array(uids, dtype=object),
        "extra_info": [
            {"split": "test", "category": c, "cycle_category": y} for c, y in zip(categories, cycles, strict=True)
        ],
        "reward_model": [{"ground_truth": "A"}] * 5,
    }
    loader = ValidationRows([{k: v for k, v in batch.items() if k != "uid"}])
    for taken in loader:  # as veRL's _validate: the uid column is written after the batch is taken
        taken["uid"] = batch["uid"]
    assert len(loader) == 1 and loader.rows["q5"]["cycle_category"] == "c2"
    t._val_rows = loader
    infos = {"acc": acc, "score": acc, "iou": [-1.0] * 5, "evidence_scale": [0.1, 0.5, 0.9, 1.0, 1.0]}
    infos["num_zooms"] = [1.0, 1.0, 1.0, 0.0, 0.0]
    metrics = t._val_metrics_update(["hr_bench_4k"] * 5, uids, infos, [2, 2, 2, 1, 1])
    assert metrics["val-core/hr_bench_4k/acc/mean@1"] == pytest.approx(0.6)  # veRL's own, pooled
    assert metrics["val-core/hr_bench_4k/acc"] == pytest.approx(0.375)
    assert metrics["val-aux/hr_bench_4k/acc_pooled"] == pytest.approx(0.6)
    assert metrics["val-aux/hr_bench_4k/FSP/acc"] == pytest.approx((1.0 + 0.0) / 2)
    assert metrics["val-aux/hr_bench_4k/FCP/acc"] == pytest.approx(0.5)


def test_judge_counts_reach_the_step_metrics(transfer_queue):
    judged = [
        {"judge_called": 1.0, "judge_failed": 0.0, "judge_agree": 1.0, "judge_latency_s": 0.5},
        {"judge_called": 1.0, "judge_failed": 1.0, "judge_agree": -1.0, "judge_latency_s": 2.0},
        {"judge_called": 0.0, "judge_failed": 0.0, "judge_agree": -1.0, "judge_latency_s": 0.0},
    ]
    keys = [f"j_{s}_0" for s in range(3)]
    batch = put_rollouts("judge", keys, [1.0, 0.0, 1.0], [0.2] * 3, [1.0, 0.0, 1.0], [2] * 3, judged)
    metrics: dict = {}
    trainer("srpo")._compute_advantage(batch, metrics)
    assert (metrics["judge/calls"], metrics["judge/failures"]) == (2.0, 1.0)
    assert metrics["judge/agree_with_rules"] == 1.0 and metrics["judge/latency_max_s"] == 2.0


def test_branching_diagnostics_reach_the_step_metrics(transfer_queue):
    """Two prompts of the paper's shape (G2 = 2): a leader and its follower each, one pair diverging."""
    branch = [
        {"uid": "u1", "group": "u1/0", "role": "leader", "tail": "a"},
        {"uid": "u1", "group": "u1/0", "role": "follower", "tail": "b"},
        {"uid": "u2", "group": "u2/0", "role": "leader", "tail": "c"},
        {"uid": "u2", "group": "u2/0", "role": "follower", "tail": "c"},
    ]
    keys = ["u1_0_0", "u1_1_0", "u2_0_0", "u2_1_0"]
    batch = put_rollouts(
        "branch",
        keys,
        [1.0, 0.0, 1.0, 1.0],
        [0.2] * 4,
        [1.0, 0.0, 1.0, 1.0],
        [2] * 4,
        None,
        [{"branch": b} for b in branch],
    )
    metrics: dict = {}
    trainer("srpo")._compute_advantage(batch, metrics)
    assert metrics["branch/branches_per_prompt"] == 1.0 and metrics["branch/follower_share"] == 0.5
    assert metrics["branch/diverged_share"] == 0.5
