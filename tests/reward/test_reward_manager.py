"""compute_score under veRL's own reward loop: RewardLoopWorker -> NaiveRewardManager on a real DataProto.

The response is a two-turn rollout rendered by the recipe's chat template and tokenized by the tiny Qwen
tokenizer; veRL decodes it itself (skip_special_tokens=True), merges the tool's extra fields into
extra_info, calls compute_score by the config's path/name/reward_kwargs, and returns our dict as
reward_extra_info.
"""

from __future__ import annotations

import numpy as np
import pytest
from verl.experimental.reward_loop.reward_loop import RewardLoopWorker
from verl.experimental.reward_loop.reward_manager.naive import NaiveRewardManager

from verl_ext.evidence import ZOOM_RECORDS_KEY
from verl_ext.reward import REWARD_KEYS

NO_JUDGE = {
    "judge_called": 0.0,
    "judge_failed": 0.0,
    "judge_agree": -1.0,
    "judge_latency_s": 0.0,
    "judge_error": 0.0,
    "judge_circuit_opens": 0.0,
}
ZOOM_TURN = "<think>The sign is too small to read.</think>\n<box>[100, 50, 300, 250]</box>"
RECORD = {
    "bbox_model": [100, 50, 300, 250],
    "bbox_original": [200, 100, 600, 500],
    "relative_area": 0.125,
    "valid": True,
    "reason": "",
}


ROWS = [
    {
        "data_source": "vstar",
        "question": "What colour is the sign?",
        "turns": [ZOOM_TURN, "<think>The crop shows a blue sign.</think>\n<answer>(B)</answer>"],
        "truth": "B",
        "extra_info": {"options": ["red", "blue", "green", "white"], "index": 0},
        "extra_fields": {ZOOM_RECORDS_KEY: [RECORD], "turn_scores": [], "tool_rewards": [0.0]},
    },
    {
        "data_source": "refcoco",
        "question": "Locate the man on the left.",
        "turns": ['<think>He stands left.</think>\n<answer>{"bbox_2d": [100, 50, 300, 250]}</answer>'],
        "truth": np.array([200.0, 100.0, 600.0, 500.0]),
        "extra_info": {"image_width": 1280, "image_height": 960, "resized_width": 640, "resized_height": 480},
        "extra_fields": {},
    },
    {
        "data_source": "hr_bench_8k",
        "question": "Which letter?",
        "turns": ["I think it is C"],
        "truth": "A",
        "extra_info": {},
        "extra_fields": {ZOOM_RECORDS_KEY: np.array([{**RECORD, "valid": False}], dtype=object)},
    },
]


async def test_reward_loop_worker_returns_our_keys_as_reward_extra_info(model_dir, reward_config, rollout_batch):
    worker = RewardLoopWorker(reward_config(model_dir, {"format_weight": 0.2, "answer_weight": 0.8}))
    assert isinstance(worker.reward_manager, NaiveRewardManager)
    outputs = await worker.compute_score_batch(rollout_batch(ROWS))
    infos = [o["reward_extra_info"] for o in outputs]
    assert all(tuple(info) == REWARD_KEYS for info in infos)  # the agent loop stacks keys of row 0 for all rows
    assert [o["reward_score"] for o in outputs] == pytest.approx([1.0, 1.0, 0.0])
    assert infos[0] == {
        "score": pytest.approx(1.0),
        "acc": 1.0,
        "format": 1.0,
        "iou": -1.0,
        "evidence_scale": 0.125,
        "num_zooms": 1.0,
        **NO_JUDGE,
    }
    assert infos[1] == {
        "score": pytest.approx(1.0),
        "acc": 1.0,
        "format": 1.0,
        "iou": pytest.approx(1.0),
        "evidence_scale": 1.0,
        "num_zooms": 0.0,
        **NO_JUDGE,
    }
    assert infos[2] == {
        "score": 0.0,
        "acc": 0.0,
        "format": 0.0,
        "iou": -1.0,
        "evidence_scale": 1.0,
        "num_zooms": 1.0,
        **NO_JUDGE,
    }


async def test_naive_manager_decodes_the_tokenized_multi_turn_response(tokenizer, rollout_batch):
    """The manager built directly (inside the running loop) scores the same rollout from token ids."""
    from verl_ext.reward import compute_score

    manager = NaiveRewardManager(config=None, tokenizer=tokenizer, compute_score=compute_score)
    out = await manager.run_single(rollout_batch(ROWS[:1]))
    assert out["reward_score"] == pytest.approx(1.0)
    assert out["reward_extra_info"]["evidence_scale"] == 0.125
