"""compute_score under veRL's own reward loop: RewardLoopWorker -> NaiveRewardManager on a real DataProto.

The response is a two-turn rollout rendered by the recipe's chat template and tokenized by the tiny Qwen
tokenizer; veRL decodes it itself (skip_special_tokens=True), merges the tool's extra fields into
extra_info, calls compute_score by the config's path/name/reward_kwargs, and returns our dict as
reward_extra_info.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from verl import DataProto
from verl.experimental.reward_loop.reward_loop import RewardLoopWorker
from verl.experimental.reward_loop.reward_manager.naive import NaiveRewardManager

from verl_ext.evidence import ZOOM_RECORDS_KEY
from verl_ext.reward import REWARD_KEYS

ZOOM_TURN = "<think>The sign is too small to read.</think>\n<box>[100, 50, 300, 250]</box>"
RECORD = {
    "bbox_model": [100, 50, 300, 250],
    "bbox_original": [200, 100, 600, 500],
    "relative_area": 0.125,
    "valid": True,
    "reason": "",
}


@pytest.fixture
def model_dir(tmp_path, tokenizer):
    tokenizer.save_pretrained(tmp_path)
    return str(tmp_path)


def reward_config(model_dir: str):
    return OmegaConf.create(
        {
            "actor_rollout_ref": {"model": {"path": model_dir, "tokenizer_path": None}},
            "reward": {
                "custom_reward_function": {
                    "path": "pkg://verl_ext.reward",
                    "name": "compute_score",
                    "reward_kwargs": {"format_weight": 0.2, "answer_weight": 0.8},
                },
                "reward_manager": {"source": "register", "name": "naive"},
                "reward_model": {"enable": False},
            },
        }
    )


def rollout_batch(tokenizer, rows: list[dict]) -> DataProto:
    """One DataProto row per rollout: left-padded prompt, right-padded response, as the agent loop builds it."""
    prompts, responses = [], []
    for row in rows:
        head = [{"role": "system", "content": "sys"}, {"role": "user", "content": row["question"]}]
        messages = list(head)
        for i, turn in enumerate(row["turns"]):
            messages.append({"role": "assistant", "content": turn})
            if i < len(row["turns"]) - 1:
                messages.append({"role": "tool", "content": [{"type": "image"}, {"type": "text", "text": "Zoomed."}]})
        prompt_text = tokenizer.apply_chat_template(head, add_generation_prompt=True, tokenize=False)
        full_text = tokenizer.apply_chat_template(messages, tokenize=False).rstrip("\n")
        prompts.append(tokenizer(prompt_text, add_special_tokens=False)["input_ids"])
        responses.append(tokenizer(full_text[len(prompt_text) :], add_special_tokens=False)["input_ids"])
    p_len, r_len, pad = max(map(len, prompts)), max(map(len, responses)) + 3, tokenizer.pad_token_id
    prompt_ids = torch.tensor([[pad] * (p_len - len(p)) + p for p in prompts])
    response_ids = torch.tensor([r + [pad] * (r_len - len(r)) for r in responses])
    mask = torch.tensor(
        [
            [0] * (p_len - len(p)) + [1] * (len(p) + len(r)) + [0] * (r_len - len(r))
            for p, r in zip(prompts, responses, strict=True)
        ]
    )
    return DataProto.from_dict(
        tensors={
            "prompts": prompt_ids,
            "responses": response_ids,
            "attention_mask": mask,
            "input_ids": torch.cat([prompt_ids, response_ids], dim=1),
        },
        non_tensors={
            "data_source": np.array([r["data_source"] for r in rows], dtype=object),
            "reward_model": np.array([{"ground_truth": r["truth"], "style": "rule"} for r in rows], dtype=object),
            "extra_info": np.array([dict(r["extra_info"]) for r in rows], dtype=object),
            "tool_extra_fields": np.array([r["extra_fields"] for r in rows], dtype=object),
            "__num_turns__": np.array([2 * len(r["turns"]) for r in rows], dtype=np.int32),
        },
    )


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


async def test_reward_loop_worker_returns_our_keys_as_reward_extra_info(model_dir, tokenizer):
    worker = RewardLoopWorker(reward_config(model_dir))
    assert isinstance(worker.reward_manager, NaiveRewardManager)
    outputs = await worker.compute_score_batch(rollout_batch(tokenizer, ROWS))
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
    }
    assert infos[1] == {
        "score": pytest.approx(1.0),
        "acc": 1.0,
        "format": 1.0,
        "iou": pytest.approx(1.0),
        "evidence_scale": 1.0,
        "num_zooms": 0.0,
    }
    assert infos[2] == {"score": 0.0, "acc": 0.0, "format": 0.0, "iou": -1.0, "evidence_scale": 1.0, "num_zooms": 1.0}


async def test_naive_manager_decodes_the_tokenized_multi_turn_response(tokenizer):
    """The manager built directly (inside the running loop) scores the same rollout from token ids."""
    from verl_ext.reward import compute_score

    manager = NaiveRewardManager(config=None, tokenizer=tokenizer, compute_score=compute_score)
    out = await manager.run_single(rollout_batch(tokenizer, ROWS[:1]))
    assert out["reward_score"] == pytest.approx(1.0)
    assert out["reward_extra_info"]["evidence_scale"] == 0.125
