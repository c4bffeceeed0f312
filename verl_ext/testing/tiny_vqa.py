"""A small multiple-choice VQA parquet in the project's real row schema, generated offline for the CPU demo.

Each row holds one synthetic image (a coloured rectangle on a grey canvas; sizes vary so prompts differ
in length) and asks for the rectangle's colour. Rows are built by the same code the data-prep converters
use (:func:`verl_ext.data.rows.build_row`, the ``<box>`` system prompt, the zoom tool's ``tools_kwargs``
with the image bytes, ``data_source=visual_cot`` with the rectangle as evidence box) and written with the
shared Arrow schema through the atomic split writer, so the dataset hook, the zoom tool and the reward
see exactly what they see on real data.

    python -m verl_ext.testing.tiny_vqa --out /tmp/tiny-data --rows 4
"""

from __future__ import annotations

import argparse
import io
import random
from pathlib import Path
from typing import Any

COLOURS = {"red": (220, 30, 30), "green": (30, 180, 60), "blue": (40, 60, 220), "yellow": (230, 210, 40)}
#: Canvas sizes (w, h): all within the tiny processor's pixel bounds after smart_resize.
SIZES = [(112, 84), (140, 112), (84, 168), (196, 112), (168, 140), (112, 112)]
QUESTION = "What colour is the rectangle?"


def image_bytes(size: tuple[int, int], colour: tuple[int, int, int], rng: random.Random) -> tuple[bytes, list[float]]:
    """A PNG of a ``colour`` rectangle on grey and the rectangle's box ``[x1, y1, x2, y2]`` in its pixels."""
    from PIL import Image, ImageDraw

    w, h = size
    image = Image.new("RGB", size, (128, 128, 128))
    x1, y1 = rng.randrange(0, w // 2), rng.randrange(0, h // 2)
    box = [x1, y1, x1 + w // 3, y1 + h // 3]
    ImageDraw.Draw(image).rectangle(box, fill=colour)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue(), [float(v) for v in box]


def rows(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` rows as ``data_prep`` writes them: ``data_source, prompt, images, ability, reward_model,
    extra_info (with the zoom tool's kwargs), agent_name``."""
    from verl_ext.data.rows import ImageRef, build_row, validate_row, vqa_messages
    from verl_ext.data_sources import VISUAL_COT

    rng = random.Random(seed)
    names = list(COLOURS)
    out = []
    for index in range(n):
        answer = names[index % len(names)]
        letter = chr(ord("A") + names.index(answer))
        size = SIZES[index % len(SIZES)]
        data, box = image_bytes(size, COLOURS[answer], rng)
        row = build_row(
            data_source=VISUAL_COT,
            messages=vqa_messages(QUESTION, names, "box"),
            image=ImageRef(None, size[0], size[1], data),
            ability="vqa",
            ground_truth=letter,
            extra_info={
                "index": index,
                "split": "train",
                "question": QUESTION,
                "answer": letter,
                "options": names,
                "answer_type": "multiple_choice",
                "evidence_boxes": [box],
            },
            use_tool=True,
        )
        validate_row(row)
        out.append(row)
    return out


def write(out_dir: str | Path, n: int = 4, seed: int = 0, name: str = "train") -> Path:
    """Write ``<name>.parquet`` with ``n`` rows to ``out_dir`` (atomically) and return its path."""
    from verl_ext.data.schema import ANSWER_SCHEMA
    from verl_ext.data.writer import SplitWriter

    out = Path(out_dir)
    with SplitWriter(out, ANSWER_SCHEMA) as writer:
        for row in rows(n, seed):
            writer.write(name, row)
    return out / f"{name}.parquet"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder to write train.parquet to")
    parser.add_argument("--rows", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(write(args.out, args.rows, args.seed))


if __name__ == "__main__":
    main()
