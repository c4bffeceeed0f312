"""A tiny Qwen2.5-VL that already zooms: a seeded, offline warm start for the CPU demo.

A randomly initialised model never writes ``<box>``, so in a demo run the zoom tool is never called and
the recipe's reward is zero everywhere. This module teaches the tiny model the protocol in well under a
minute on two cores, by teacher forcing on scripted conversations:

    <think>...</think>\\n<box>[x1, y1, x2, y2]</box>      (boxes of small, medium and whole-image size)
    <tool_response> the crop and the zoom tool's own text </tool_response>
    <think>...</think>\\n<answer>X</answer>               (the right letter most of the time)

The conversations are not rendered by hand: veRL's own ``AgentLoopWorker`` runs the recipe's agent loop
(``ground_r1_tool_agent``, the ``<box>`` parser, the real ``RegionZoomTool``, the recipe chat template)
on rows from :mod:`verl_ext.testing.tiny_vqa` loaded through the dataset hook, against a scripted
generation client. The tensors it returns (token ids, response mask, pixel values) are exactly what a
run's rollout produces, and the loss covers the assistant's tokens only (veRL's ``response_mask``).

    python -m verl_ext.testing.tiny_policy --out /tmp/tiny-policy

writes a ``from_pretrained``-loadable folder (tokenizer, processor, chat template, weights).
:func:`preview` samples the saved policy through the same agent loop with the ``hf`` rollout server
and scores it with the recipe's reward, to show what a run will see.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from verl_ext.config import compose_recipe
from verl_ext.geometry import FACTOR
from verl_ext.testing.tiny_qwen import TINY_MAX_PIXELS, TINY_MIN_PIXELS, build_tiny_qwen25vl
from verl_ext.testing.tiny_vqa import COLOURS

#: Token budgets of the demo run (prompt: system turn + question + image; response: two turns + a crop turn).
PROMPT_LENGTH = 384
RESPONSE_LENGTH = 320
#: Scripted box sizes as a share of the resized image's area, one per SRPO bin (K=3, equal width).
BOX_AREA_SHARES = ((0.0, 0.2), (0.4, 0.6), (0.8, 1.0))
LETTERS = "".join(chr(ord("A") + i) for i in range(len(COLOURS)))
ZOOM_THINK = "<think>Look closer.</think>\n"
ANSWER_THINK = "<think>I see it.</think>\n"


@dataclass(frozen=True)
class WarmStart:
    """How the warm start trains. Defaults: about a minute on two cores; sampled rollouts zoom and answer."""

    seed: int = 0
    rows: int = 12
    per_row: int = 8
    steps: int = 300
    batch_size: int = 8
    lr: float = 3e-3
    p_correct: float = 0.75


def recipe_config(model_dir: str | Path, data_file: str | Path, overrides: list[str] | None = None):
    """The recipe's composed and resolved config for the tiny model and data (the demo run's settings)."""
    base = [
        f"actor_rollout_ref.model.path={model_dir}",
        f"data.train_files={data_file}",
        f"data.val_files={data_file}",
        f"data.min_pixels={TINY_MIN_PIXELS}",
        f"data.max_pixels={TINY_MAX_PIXELS}",
        f"data.max_prompt_length={PROMPT_LENGTH}",
        f"data.max_response_length={RESPONSE_LENGTH}",
        "data.filter_overlong_prompts=False",
        "actor_rollout_ref.rollout.name=hf",
        "actor_rollout_ref.rollout.calculate_log_probs=False",
    ]
    return compose_recipe(base + list(overrides or []))


def load_rows(config, tokenizer, processor) -> list[dict[str, Any]]:
    """Every row of ``data.train_files`` as the recipe's dataset hook hands it to the trainer."""
    from omegaconf import OmegaConf
    from verl.utils.import_utils import load_extern_object

    custom = config.data.custom_cls
    dataset_cls = load_extern_object(custom.path, custom.name)
    files = OmegaConf.to_container(config.data.train_files) if not isinstance(config.data.train_files, str) else None
    dataset = dataset_cls(files or config.data.train_files, tokenizer, config.data, processor=processor)
    return [dataset[i] for i in range(len(dataset))]


def zoom_turn(width: int, height: int, rng: random.Random) -> str:
    """``<think>..</think>`` and a box of a random size class, on the 28-pixel grid of the resized frame.

    Resized sides are multiples of 28 (``smart_resize``), so grid boxes are exact; the top-left corner is one
    of the first grid points. The coordinates come from a small set: few enough for a tiny model to learn
    them well in a minute, varied enough to fill every bin.
    """
    cols, rows = width // FACTOR, height // FACTOR
    low, high = BOX_AREA_SHARES[rng.randrange(len(BOX_AREA_SHARES))]
    candidates = [
        (w, h) for w in range(1, cols + 1) for h in range(1, rows + 1) if low <= w * h / (cols * rows) <= high
    ] or [(1, 1)]
    w, h = rng.choice(candidates)
    x1, y1 = rng.randint(0, min(1, cols - w)), rng.randint(0, min(1, rows - h))
    box = [FACTOR * v for v in (x1, y1, x1 + w, y1 + h)]
    return f"{ZOOM_THINK}<box>[{box[0]}, {box[1]}, {box[2]}, {box[3]}]</box>"


def answer_turn(truth: str, rng: random.Random, p_correct: float) -> str:
    letter = truth if rng.random() < p_correct else rng.choice([c for c in LETTERS if c != truth])
    return f"{ANSWER_THINK}<answer>{letter}</answer>"


class ScriptedClient:
    """veRL's generation-client contract (``generate(request_id, *, prompt_ids, ...) -> TokenOutput``),
    replaying one scripted conversation per trajectory: a zoom turn, then an answer turn."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self.eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
        self.scripts: list[tuple[str, str]] = []
        self._by_request: dict[str, tuple[str, str]] = {}
        self._turns: dict[str, int] = defaultdict(int)

    def load(self, scripts: list[tuple[str, str]]) -> None:
        self.scripts = list(scripts)
        self._by_request.clear()
        self._turns.clear()

    async def generate(self, request_id: str, *, prompt_ids: list[int], sampling_params: dict, **kwargs: Any):
        from verl.workers.rollout.replica import TokenOutput

        if request_id not in self._by_request:
            self._by_request[request_id] = self.scripts.pop()
        turn = self._turns[request_id]
        self._turns[request_id] += 1
        text = self._by_request[request_id][min(turn, 1)]
        ids = self.tokenizer.encode(text, add_special_tokens=False) + [self.eos]
        return TokenOutput(token_ids=ids, log_probs=[0.0] * len(ids))


def _row_batch(row: dict[str, Any], n: int):
    """A DataProto of ``n`` copies of one dataset row, as the trainer hands rows to the agent loop."""
    from verl.protocol import DataProto
    from verl.utils.dataset.rl_dataset import collate_fn

    return DataProto.from_single_dict(collate_fn([row] * n))


def demo_script(row: dict[str, Any], rng: random.Random, p_correct: float) -> tuple[str, str]:
    """One scripted conversation of the demo task: a zoom on a random box, then the answer, right with ``p_correct``."""
    extra = row["extra_info"]
    truth = str(row["reward_model"]["ground_truth"])
    return zoom_turn(extra["resized_width"], extra["resized_height"], rng), answer_turn(truth, rng, p_correct)


def scripted_rollouts(
    config,
    rows: list[dict[str, Any]],
    ws: WarmStart,
    script: Callable[[dict[str, Any], random.Random, float], tuple[str, str]] = demo_script,
):
    """Teacher-forcing data: veRL's agent loop output for ``ws.per_row`` conversations per row, each the two turns
    ``script(row, rng, ws.p_correct)`` writes."""
    from verl.experimental.agent_loop.agent_loop import AgentLoopWorker
    from verl.protocol import DataProto

    rng = random.Random(ws.seed)
    worker = AgentLoopWorker(config, llm_client=None)
    client = ScriptedClient(worker.tokenizer)
    worker.llm_client = client
    outputs = []
    for row in rows:
        client.load([script(row, rng, ws.p_correct) for _ in range(ws.per_row)])
        outputs.append(asyncio.run(worker.generate_sequences(_row_batch(row, ws.per_row))))
    batch = DataProto.concat(outputs)
    # Trajectories of a row reach the client in task order; sort so the data never depends on it.
    order = sorted(range(len(batch)), key=lambda i: batch.batch["input_ids"][i].tolist())
    return batch[order], worker.tokenizer


def _model_inputs(batch, indices: list[int]) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """Model inputs for ``indices`` trimmed to their common span; targets and the loss mask (assistant tokens)."""
    attention = batch.batch["attention_mask"][indices]
    used = attention.any(0).nonzero().flatten()
    lo, hi = int(used[0]), int(used[-1]) + 1
    prompt_len = batch.batch["prompts"].shape[1]
    input_ids = batch.batch["input_ids"][indices][:, lo:hi]
    loss_mask = torch.zeros_like(batch.batch["input_ids"][indices])
    loss_mask[:, prompt_len:] = batch.batch["response_mask"][indices]
    mm = [batch.non_tensor_batch["multi_modal_inputs"][i] for i in indices]
    inputs = {
        "input_ids": input_ids,
        "attention_mask": attention[:, lo:hi],
        # The (text, t, h, w) positions veRL's agent loop computed, as veRL's actor feeds them: without them
        # transformers 5.x falls back to 1-D positions for image tokens and the policy learns another geometry.
        "position_ids": batch.batch["position_ids"][indices][..., lo:hi].transpose(0, 1),
        "pixel_values": torch.cat([m["pixel_values"] for m in mm]),
        "image_grid_thw": torch.cat([m["image_grid_thw"] for m in mm]),
    }
    return inputs, input_ids[:, 1:], loss_mask[:, lo:hi][:, 1:].float()


def train(model, batch, ws: WarmStart, log_every: int = 50) -> list[float]:
    """Teacher forcing with AdamW on the assistant tokens; the loss of each step."""
    generator = torch.Generator().manual_seed(ws.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=ws.lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / 10) * (1 - s / ws.steps))
    model.train()
    losses = []
    for step in range(ws.steps):
        indices = torch.randperm(len(batch), generator=generator)[: ws.batch_size].sort().values.tolist()
        inputs, targets, mask = _model_inputs(batch, indices)
        logits = model(**inputs).logits[:, :-1].float()
        nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
        loss = (nll * mask).sum() / mask.sum()
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        if log_every and (step % log_every == 0 or step == ws.steps - 1):
            print(f"[tiny_policy] step {step:4d} loss {losses[-1]:.4f}", flush=True)
    model.eval()
    return losses


def build_tiny_policy(out_dir: str | Path, ws: WarmStart = WarmStart(), log_every: int = 50) -> Path:
    """Build the tiny checkpoint in ``out_dir``, warm-start it on scripted zoom conversations and save it."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    from verl_ext.testing import tiny_vqa

    start = time.monotonic()
    torch.manual_seed(ws.seed)
    out = build_tiny_qwen25vl(out_dir, seed=ws.seed)
    with tempfile.TemporaryDirectory(prefix="tiny_policy_") as tmp:
        data = tiny_vqa.write(tmp, ws.rows, seed=ws.seed + 1000)
        config = recipe_config(out, data)
        from verl.utils import hf_processor, hf_tokenizer

        tokenizer, processor = hf_tokenizer(str(out)), hf_processor(str(out))
        batch, _ = scripted_rollouts(config, load_rows(config, tokenizer, processor), ws)
    print(f"[tiny_policy] {len(batch)} scripted rollouts in {time.monotonic() - start:.1f} s", flush=True)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(out, dtype=torch.float32, attn_implementation="sdpa")
    train(model, batch, ws, log_every)
    model.save_pretrained(out)
    print(f"[tiny_policy] trained {ws.steps} steps; {time.monotonic() - start:.1f} s in all", flush=True)
    return out


@dataclass
class Preview:
    """What sampled rollouts of a policy look like under the recipe's reward."""

    rewards: list[float]
    scales: list[float]
    num_zooms: list[float]
    acc: list[float]
    formats: list[float]

    def summary(self) -> str:
        bins = Counter(min(int(3 * s), 2) for s in self.scales)
        return (
            f"{len(self.rewards)} rollouts: zoomed {sum(z >= 1 for z in self.num_zooms)}, "
            f"valid zoom (scale < 1) {sum(s < 1 for s in self.scales)}, well formed {sum(self.formats):.0f}, "
            f"right {sum(self.acc):.0f}; scale bins {dict(sorted(bins.items()))}; "
            f"rewards {dict(sorted(Counter(round(r, 2) for r in self.rewards).items()))}"
        )


def preview(model_dir: str | Path, data_file: str | Path, n: int = 4, seed: int = 0) -> Preview:
    """Sample ``n`` rollouts per row at temperature 1 through the recipe's agent loop and the ``hf`` rollout
    server, and score them with the recipe's reward (the same path a training step takes)."""
    from omegaconf import OmegaConf
    from verl.experimental.agent_loop.agent_loop import AgentLoopWorker
    from verl.utils import hf_processor, hf_tokenizer

    from verl_ext.cpu.hf_rollout import HFGenerateServer
    from verl_ext.reward import compute_score

    torch.manual_seed(seed)
    config = recipe_config(model_dir, data_file)
    server = HFGenerateServer(config.actor_rollout_ref.rollout, config.actor_rollout_ref.model, replica_rank=0)
    worker = AgentLoopWorker(config, llm_client=server)
    tokenizer, processor = hf_tokenizer(str(model_dir)), hf_processor(str(model_dir))
    kwargs = OmegaConf.to_container(config.reward.custom_reward_function.reward_kwargs)
    rows = load_rows(config, tokenizer, processor)

    async def rollouts():  # one event loop for all: the server's lock belongs to the first loop it runs in
        return [await worker.generate_sequences(_row_batch(row, n)) for row in rows]

    result = Preview([], [], [], [], [])
    for row, out in zip(rows, asyncio.run(rollouts()), strict=True):
        for i in range(len(out)):
            mask = out.batch["attention_mask"][i, out.batch["prompts"].shape[1] :].bool()
            text = tokenizer.decode(out.batch["responses"][i][mask].tolist(), skip_special_tokens=True)
            extra = {**row["extra_info"], **_extra_fields(out, i)}
            score = compute_score(row["data_source"], text, row["reward_model"]["ground_truth"], extra, **kwargs)
            result.rewards.append(score["score"])
            result.scales.append(score["evidence_scale"])
            result.num_zooms.append(score["num_zooms"])
            result.acc.append(score["acc"])
            result.formats.append(score["format"])
    return result


def _extra_fields(out, i: int) -> dict[str, Any]:
    from verl_ext.evidence import ZOOM_RECORDS_KEY

    records = out.non_tensor_batch.get(ZOOM_RECORDS_KEY)
    value = records[i] if records is not None else None
    return {ZOOM_RECORDS_KEY: list(value) if isinstance(value, list | np.ndarray) else []}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder to write the checkpoint to")
    parser.add_argument("--seed", type=int, default=WarmStart.seed)
    parser.add_argument("--steps", type=int, default=WarmStart.steps)
    parser.add_argument("--preview", metavar="PARQUET", help="then sample and score rollouts on this data file")
    args = parser.parse_args()
    path = build_tiny_policy(args.out, WarmStart(seed=args.seed, steps=args.steps))
    if args.preview:
        print(f"[tiny_policy] preview: {preview(path, args.preview, seed=args.seed).summary()}", flush=True)
    print(path)


if __name__ == "__main__":
    main()
