"""The evaluation harness's own overhead per question vs the bare agent-loop call it wraps.

Each question is a 7680x4320 JPEG that the model (a server answering instantly) zooms into once, then answers.
- "bare": veRL's ``AgentLoopWorker.generate_sequences`` on the row the dataset hook built, with an in-process
  scripted client (no HTTP, no reward, no records): the floor any harness pays (the zoom tool decodes the 8K
  original and crops it).
- "harness": ``python -m recipe.ground_r1.main_eval`` in process with the openai back end against a local
  server: row loading, PNG data URLs of the image and the crop, HTTP, the reward through veRL's reward loop,
  the record, trajectories.jsonl, and the report's thumbnails. Measured as the difference between runs of
  ``2n`` and ``n`` questions, so start-up (model config, datasets) is left out.

    python benchmarks/bench_eval.py [--questions 6]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "eval"))

MIN_PIXELS, MAX_PIXELS = 3136, 401408  # the paper's bounds: 7680x4320 is 840x476 to the model
ZOOM = "<think>The sign is small.</think>\n<box>[300, 150, 510, 270]</box>"
ANSWER = "<think>Now it is legible.</think>\n<answer>A</answer>"


def write_vstar(root: Path, count: int, width: int, height: int) -> None:
    """A V* Bench folder of ``count`` questions sharing one photo-like 8K JPEG."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([x / width * 255, y / height * 255, (x + y) / (width + height) * 255], axis=-1)
    noise = rng.normal(0, 12, (height, width, 1)).astype(np.float32)
    image = Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8), "RGB")
    folder = root / "direct_attributes"
    folder.mkdir(parents=True)
    image.save(folder / "q0.jpg", quality=90)
    for k in range(count):
        if k:
            shutil.copy(folder / "q0.jpg", folder / f"q{k}.jpg")
        meta = {"question": f"What does sign {k} say?", "options": ["stop", "go", "wait", "yield"],
                "target_object": ["sign"], "bbox": [[10, 10, 50, 50]]}  # fmt: skip
        (folder / f"q{k}.json").write_text(json.dumps(meta))


def convert(root: Path, out: Path) -> Path:
    subprocess.run(
        [sys.executable, str(REPO / "data_prep" / "vstar_to_parquet.py"), "--root", str(root), "--out", str(out)],
        check=True, capture_output=True,
    )  # fmt: skip
    return next(out.glob("*.parquet"))


def harness_seconds(model: Path, data: Path, out: Path, questions: int) -> float:
    from eval_fixtures import ChatServer

    from recipe.ground_r1.main_eval import main

    table = {"What does sign": [ZOOM, ANSWER]}
    with ChatServer(table) as server:
        start = time.perf_counter()
        main(
            [
                f"actor_rollout_ref.model.path={model}", f"data.val_files=[{data}]",
                f"data.min_pixels={MIN_PIXELS}", f"data.max_pixels={MAX_PIXELS}",
                "data.max_prompt_length=4096", "data.max_response_length=4096",
                "eval.backend=openai", f"eval.base_url={server.base_url}", f"eval.out_dir={out}",
                f"eval.limit={questions}", "eval.max_concurrency=1",
            ]
        )  # fmt: skip
        return time.perf_counter() - start


class Scripted:
    """In-process client with veRL's ``generate`` contract replaying the zoom then the answer."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer, self.turns = tokenizer, {}

    async def generate(self, request_id, *, prompt_ids, sampling_params, image_data=None, **kwargs):
        from verl.workers.rollout.replica import TokenOutput

        turn = self.turns[request_id] = self.turns.get(request_id, -1) + 1
        ids = self.tokenizer.encode([ZOOM, ANSWER][min(turn, 1)], add_special_tokens=False)
        return TokenOutput(token_ids=[*ids, self.tokenizer.convert_tokens_to_ids("<|im_end|>")])


def bare_seconds(model: Path, data: Path, questions: int) -> list[float]:
    from verl.experimental.agent_loop.agent_loop import AgentLoopWorker
    from verl.protocol import DataProto
    from verl.utils import hf_processor, hf_tokenizer
    from verl.utils.dataset.rl_dataset import collate_fn, get_dataset_class

    from recipe.ground_r1.main_eval import compose_eval_config

    config = compose_eval_config(
        [f"actor_rollout_ref.model.path={model}", f"data.min_pixels={MIN_PIXELS}", f"data.max_pixels={MAX_PIXELS}",
         "data.max_prompt_length=4096", "data.max_response_length=4096"]
    )  # fmt: skip
    tokenizer, processor = hf_tokenizer(str(model)), hf_processor(str(model))
    dataset = get_dataset_class(config.data)(str(data), tokenizer, config.data, processor=processor)

    async def run() -> list[float]:
        worker = AgentLoopWorker(config, llm_client=Scripted(tokenizer))
        times = []
        for k in range(questions + 1):  # the first call warms up
            start = time.perf_counter()
            row = dataset[k % len(dataset)]
            batch = DataProto.from_single_dict(collate_fn([row]), meta_info={"validate": True})
            out = await worker.generate_sequences(batch)
            assert out.non_tensor_batch["zoom_records"][0][0]["valid"]
            times.append(time.perf_counter() - start)
        return times[1:]

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", type=int, default=6)
    parser.add_argument("--width", type=int, default=7680)
    parser.add_argument("--height", type=int, default=4320)
    args = parser.parse_args()
    from verl_ext.testing.tiny_qwen import build_tiny_qwen25vl

    n = args.questions
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = build_tiny_qwen25vl(tmp / "model", with_model=False, min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)
        write_vstar(tmp / "src", 2 * n, args.width, args.height)
        data = convert(tmp / "src", tmp / "data")
        bare = bare_seconds(model, data, n)
        small = harness_seconds(model, data, tmp / "out_n", n)
        large = harness_seconds(model, data, tmp / "out_2n", 2 * n)
    per_question = (large - small) / n
    bare_mean = float(np.mean(bare))
    print(f"{args.width}x{args.height}, one zoom per question, server answering instantly, {n} vs {2 * n} questions")
    print("| path | s / question |")
    print("|---|---|")
    print(f"| bare AgentLoopWorker.generate_sequences (scripted client) | {bare_mean:.3f} |")
    print(f"| harness (openai back end, reward, records, report) | {per_question:.3f} |")
    print(f"| harness start-up and summary (run of {n}: total - {n} x per question) | {small - n * per_question:.2f} |")
    print(f"ratio harness / bare: {per_question / bare_mean:.2f}x")


if __name__ == "__main__":
    main()
