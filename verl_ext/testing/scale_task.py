"""A synthetic task where evidence scale matters, and a tiny policy warm-started on it (issue 19, part 2).

Each image is a ``SIDE`` x ``SIDE`` grey canvas with neutral clutter (grey rectangles and lines) and four small
coloured squares, one per quadrant, in four different colours. The question names a quadrant and asks for the
colour of its square (four options, so the reward is exact):

* At the run's ``data.max_pixels`` (the tiny processor's bound) the whole image is shown at half size: every square
  is a few pixels wide, well under one 28-pixel patch, and four colours are visible at once, so the full view
  answers only with spatial reasoning at low resolution.
* A zoom on the named quadrant (a quarter of the image: SRPO's smallest bin) comes back at full resolution and
  holds exactly one coloured square, the target.
* A zoom on a half (middle bin) or on the whole image (largest bin) always holds the target, next to one or three
  other colours: the safer bet when the model does not know where to look.

Rows are written with the project's data-prep row builder and atomic split writer (``data_source=visual_cot``,
the target as evidence box in original pixels, the quadrant as ``category``), so the dataset hook, the zoom tool,
the reward and the evaluation harness see exactly what they see on real data.

The warm start (:func:`build_policy`) teaches the tiny Qwen2.5-VL the protocol on this task, by teacher forcing on
conversations rendered by veRL's own agent loop (as :mod:`verl_ext.testing.tiny_policy` does for its demo): one
zoom on a box drawn from :func:`zoom_boxes` (scale class uniform, position uniform: the policy does not yet know
where to look), then the right letter with probability ``p_correct`` when the crop holds the target and a random
letter when it does not. RL has two things left to learn: which box the named quadrant calls for, and reading
the colour better.

    python -m verl_ext.testing.scale_task data --out DIR --train 64 --test 48 --seed 0
    python -m verl_ext.testing.scale_task policy --data DIR/train.parquet --out MODEL_DIR
"""

from __future__ import annotations

import argparse
import io
import random
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from verl_ext.testing.tiny_vqa import COLOURS

if TYPE_CHECKING:
    from verl_ext.testing.tiny_policy import WarmStart

#: Side of every image in original pixels: twice the side the tiny processor shows (224 at max_pixels 50176).
SIDE = 448
#: Side range of the coloured squares in original pixels (about 6-9 pixels in the full view).
TARGET_SIDES = (12, 18)
#: Distance of a square from its quadrant's border, in original pixels (a quadrant crop holds only its own square).
MARGIN = 16
#: Neutral clutter items per image.
CLUTTER = 70
QUADRANTS = ("top-left", "top-right", "bottom-left", "bottom-right")
COLOUR_NAMES = list(COLOURS)
QUESTION = "What colour is the small square in the {quadrant} quadrant of the image?"
#: The scripted turns' thoughts (the warm start's words; the tiny tokenizer spells them out).
ZOOM_THINK = "<think>Look closer.</think>\n"
ANSWER_THINK = "<think>I see it.</think>\n"
#: Prompt budget of this task's runs: the system turn, the question with its options and a 64-token image.
PROMPT_LENGTH = 448


def quadrant_rect(quadrant: str, width: float, height: float) -> tuple[float, float, float, float]:
    """``[x1, y1, x2, y2]`` of a quadrant of a ``width`` x ``height`` frame."""
    col, row = QUADRANTS.index(quadrant) % 2, QUADRANTS.index(quadrant) // 2
    return col * width / 2, row * height / 2, (col + 1) * width / 2, (row + 1) * height / 2


def zoom_boxes(width: int, height: int) -> dict[str, list[tuple[int, int, int, int]]]:
    """The boxes the warm start zooms on, per scale class, in the model's (resized) frame.

    ``quadrant`` (a quarter of the area: SRPO bin 0 of 3), ``half`` (bin 1) and ``full`` (bin 2).
    """
    w2, h2 = width // 2, height // 2
    return {
        "quadrant": [tuple(int(v) for v in quadrant_rect(q, width, height)) for q in QUADRANTS],
        "half": [(0, 0, width, h2), (0, h2, width, height), (0, 0, w2, height), (w2, 0, width, height)],
        "full": [(0, 0, width, height)],
    }


def draw(rng: random.Random, quadrant: str, colour: str) -> tuple[bytes, list[float], dict[str, list[float]]]:
    """A PNG of the task, the target's box ``[x1, y1, x2, y2]`` (original pixels) and every square's box by colour.

    The target (``colour``) sits in ``quadrant``; the other three colours fill the other quadrants, one each.
    """
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (SIDE, SIDE), (128, 128, 128))
    pen = ImageDraw.Draw(image)
    for _ in range(CLUTTER):
        shade = (rng.randrange(40, 220),) * 3
        x, y = rng.randrange(SIDE), rng.randrange(SIDE)
        if rng.random() < 0.5:
            pen.rectangle([x, y, x + rng.randrange(4, 30), y + rng.randrange(4, 30)], fill=shade)
        else:
            pen.line([x, y, x + rng.randrange(-40, 40), y + rng.randrange(-40, 40)], fill=shade, width=2)
    others = [c for c in COLOUR_NAMES if c != colour]
    rng.shuffle(others)
    squares: dict[str, list[float]] = {}
    for q in QUADRANTS:
        name = colour if q == quadrant else others.pop()
        side = rng.randint(*TARGET_SIDES)
        qx1, qy1, qx2, qy2 = (int(v) for v in quadrant_rect(q, SIDE, SIDE))
        x1 = rng.randrange(qx1 + MARGIN, qx2 - MARGIN - side)
        y1 = rng.randrange(qy1 + MARGIN, qy2 - MARGIN - side)
        # PIL's rectangle includes its end pixel: the square covers [x1, x1 + side) exactly.
        pen.rectangle([x1, y1, x1 + side - 1, y1 + side - 1], fill=COLOURS[name])
        squares[name] = [float(x1), float(y1), float(x1 + side), float(y1 + side)]
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue(), squares[colour], squares


def rows(n: int, seed: int, split: str) -> list[dict[str, Any]]:
    """``n`` rows of ``split`` as ``data_prep`` writes them; quadrants and colours balanced, order shuffled."""
    from verl_ext.data.rows import ImageRef, validate_row, vqa_row
    from verl_ext.data_sources import VISUAL_COT

    rng = random.Random(f"{seed}/{split}")
    cases = [(QUADRANTS[i % 4], COLOUR_NAMES[(i // 4 + i) % 4]) for i in range(n)]
    rng.shuffle(cases)
    out = []
    for index, (quadrant, colour) in enumerate(cases):
        data, box, _ = draw(rng, quadrant, colour)
        row = vqa_row(
            data_source=VISUAL_COT,
            question=QUESTION.format(quadrant=quadrant),
            options=COLOUR_NAMES,
            answer=chr(ord("A") + COLOUR_NAMES.index(colour)),
            answer_type="multiple_choice",
            image=ImageRef(None, SIDE, SIDE, data),
            protocol="box",
            extra_info={"index": index, "split": split, "category": quadrant, "evidence_boxes": [box]},
        )
        validate_row(row)
        out.append(row)
    return out


def write(out_dir: str | Path, train: int, test: int, seed: int = 0) -> dict[str, Path]:
    """Write ``train.parquet`` and ``test.parquet`` (held out: other images, same distribution) atomically."""
    from verl_ext.data.schema import ANSWER_SCHEMA
    from verl_ext.data.writer import SplitWriter

    out = Path(out_dir)
    with SplitWriter(out, ANSWER_SCHEMA) as writer:
        for split, n in (("train", train), ("test", test)):
            for row in rows(n, seed, split):
                writer.write(split, row)
    return {split: out / f"{split}.parquet" for split in ("train", "test")}


def _contains(outer: tuple[float, ...], inner: list[float]) -> bool:
    return outer[0] <= inner[0] and outer[1] <= inner[1] and inner[2] <= outer[2] and inner[3] <= outer[3]


def script(row: dict[str, Any], rng: random.Random, p_correct: float) -> tuple[str, str]:
    """One scripted conversation for ``row``: a zoom on a random box, then the answer the crop supports."""
    extra = row["extra_info"]
    width, height = extra["resized_width"], extra["resized_height"]
    scale = rng.choice(["quadrant", "half", "full"])
    box = rng.choice(zoom_boxes(width, height)[scale])
    sx, sy = extra["image_width"] / width, extra["image_height"] / height
    original = (box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy)
    truth = str(row["reward_model"]["ground_truth"])
    letters = [chr(ord("A") + i) for i in range(len(COLOUR_NAMES))]
    sees_target = _contains(original, list(extra["evidence_boxes"][0]))
    letter = truth if sees_target and rng.random() < p_correct else rng.choice(letters)
    return (
        f"{ZOOM_THINK}<box>[{box[0]}, {box[1]}, {box[2]}, {box[3]}]</box>",
        f"{ANSWER_THINK}<answer>{letter}</answer>",
    )


def policy_warm_start(**changes: Any) -> WarmStart:
    """The warm start on this task: the demo warm start's steps and batch (tiny_policy.WarmStart), over 32 rows with 6
    conversations each, several minutes on two cores. 80 steps of 4 were measured too few: sampled at temperature 1
    the policy garbled its boxes and never answered, so every reward was 0 (docs/experiments.md, section 2)."""
    from verl_ext.testing.tiny_policy import WarmStart

    return WarmStart(**{"rows": 32, "per_row": 6, **changes})


def build_policy(out_dir: str | Path, data_file: str | Path, ws: WarmStart | None = None) -> Path:
    """The tiny Qwen2.5-VL warm-started on scripted conversations over the first ``ws.rows`` rows of ``data_file``."""
    ws = ws or policy_warm_start()
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration
    from verl.utils import hf_processor, hf_tokenizer

    from verl_ext.testing.tiny_policy import load_rows, recipe_config, scripted_rollouts, train
    from verl_ext.testing.tiny_qwen import build_tiny_qwen25vl

    start = time.monotonic()
    torch.manual_seed(ws.seed)
    out = build_tiny_qwen25vl(out_dir, seed=ws.seed)
    config = recipe_config(out, data_file, [f"data.max_prompt_length={PROMPT_LENGTH}"])
    rows_ = load_rows(config, hf_tokenizer(str(out)), hf_processor(str(out)))[: ws.rows]
    batch, _ = scripted_rollouts(config, rows_, ws, script)
    print(f"[scale_task] {len(batch)} scripted rollouts in {time.monotonic() - start:.1f} s", flush=True)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(out, dtype=torch.float32, attn_implementation="sdpa")
    train(model, batch, ws)
    model.save_pretrained(out)
    print(f"[scale_task] warm start: {ws.steps} steps, {time.monotonic() - start:.1f} s in all", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    data = sub.add_parser("data", help="write train.parquet and test.parquet")
    data.add_argument("--out", required=True)
    data.add_argument("--train", type=int, default=64)
    data.add_argument("--test", type=int, default=48)
    data.add_argument("--seed", type=int, default=0)
    policy = sub.add_parser("policy", help="build the warm-started tiny policy")
    policy.add_argument("--data", required=True, help="train.parquet of this task")
    policy.add_argument("--out", required=True)
    policy.add_argument("--seed", type=int, default=0)
    policy.add_argument("--steps", type=int, help="teacher-forcing steps (default: tiny_policy.WarmStart's)")
    args = parser.parse_args()
    if args.command == "data":
        for path in write(args.out, args.train, args.test, args.seed).values():
            print(path)
    else:
        changes = {"seed": args.seed} if args.steps is None else {"seed": args.seed, "steps": args.steps}
        print(build_policy(args.out, args.data, policy_warm_start(**changes)))


if __name__ == "__main__":
    main()
