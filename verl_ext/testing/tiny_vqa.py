"""A small multiple-choice VQA parquet in veRL's RLHFDataset format, generated offline for the CPU demo.

Each row holds one synthetic image (a coloured rectangle on a grey canvas; sizes vary so prompts differ
in length) and asks for the rectangle's colour. Written atomically: a failed run leaves no file.

    python -m verl_ext.testing.tiny_vqa --out /tmp/tiny-data --rows 4
"""

from __future__ import annotations

import argparse
import io
import os
import random
from pathlib import Path

COLOURS = {"red": (220, 30, 30), "green": (30, 180, 60), "blue": (40, 60, 220), "yellow": (230, 210, 40)}
#: Canvas sizes (w, h): all within the tiny processor's pixel bounds after smart_resize.
SIZES = [(112, 84), (140, 112), (84, 168), (196, 112), (168, 140), (112, 112)]
DATA_SOURCE = "tiny_cpu_vqa"


def _image_bytes(size: tuple[int, int], colour: tuple[int, int, int], rng: random.Random) -> bytes:
    from PIL import Image, ImageDraw

    w, h = size
    image = Image.new("RGB", size, (128, 128, 128))
    x1, y1 = rng.randrange(0, w // 2), rng.randrange(0, h // 2)
    ImageDraw.Draw(image).rectangle([x1, y1, x1 + w // 3, y1 + h // 3], fill=colour)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def rows(n: int, seed: int = 0) -> list[dict]:
    """``n`` RLHFDataset rows (``data_source, prompt, images, ability, reward_model, extra_info``)."""
    rng = random.Random(seed)
    names = list(COLOURS)
    out = []
    for index in range(n):
        answer = names[index % len(names)]
        options = "\n".join(f"{chr(ord('A') + i)}. {name}" for i, name in enumerate(names))
        out.append(
            {
                "data_source": DATA_SOURCE,
                "prompt": [
                    {
                        "role": "user",
                        "content": f"<image>\nWhat colour is the rectangle?\n{options}\nAnswer with the letter.",
                    }
                ],
                "images": [{"bytes": _image_bytes(SIZES[index % len(SIZES)], COLOURS[answer], rng), "path": None}],
                "ability": "vqa",
                "reward_model": {"style": "rule", "ground_truth": chr(ord("A") + names.index(answer))},
                "extra_info": {"index": index, "split": "train"},
            }
        )
    return out


def write(out_dir: str | Path, n: int = 4, seed: int = 0) -> Path:
    """Write ``train.parquet`` with ``n`` rows to ``out_dir`` (atomically) and return its path."""
    import pandas as pd

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "train.parquet"
    tmp = out / f".train.parquet.{os.getpid()}.tmp"
    try:
        pd.DataFrame(rows(n, seed)).to_parquet(tmp, index=False)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder to write train.parquet to")
    parser.add_argument("--rows", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(write(args.out, args.rows, args.seed))


if __name__ == "__main__":
    main()
