"""Convert V* Bench (a folder per category of images and JSON annotations) to a veRL evaluation parquet.

Needs the benchmark folder: <root>/<category>/<name>.json (question, options with the correct one first,
bbox of the target objects as [x, y, w, h]) next to <name>.jpg (or .jpeg/.png). Options are shuffled
with a seed derived from --seed and the question's own name (the same shuffle whatever --limit is) and
the correct letter is recorded as ground truth. Writes <out>/vstar.parquet.

  python data_prep/vstar_to_parquet.py --root ~/vstar_bench --out ~/data/eval
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from verl_ext.data import cli
from verl_ext.data.images import probe_file, resolve_in_root
from verl_ext.data.rows import ImageRef, build_row, vqa_messages
from verl_ext.data.schema import ANSWER_SCHEMA
from verl_ext.data.validation import BadRecord, DataPrepError, check_box_xywh, check_text
from verl_ext.data_sources import VSTAR

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
SPLIT = "test"


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser(__doc__)
    p.add_argument("--root", type=Path, required=True, help="V* Bench folder holding one folder per category")
    p.add_argument("--seed", type=int, default=0, help="seed of the option shuffle")
    return p


def annotations(root: Path) -> Iterator[Path]:
    return iter(sorted(root.glob("*/*.json")))


class VstarConverter:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args

    def build(self, path: Path) -> tuple[str, dict[str, Any]]:
        category = path.parent.name
        qid = f"{category}/{path.stem}"
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise BadRecord(path, qid, "unreadable annotation JSON", str(e)) from e
        if not isinstance(meta, dict):
            raise BadRecord(path, qid, "annotation is not a JSON object")
        question = check_text(meta.get("question"), path, qid, "question")
        options = meta.get("options")
        if not isinstance(options, list) or len(options) < 2 or not all(isinstance(o, str) and o for o in options):
            raise BadRecord(path, qid, "options must be a list of at least two strings", repr(options)[:80])
        image = self.image(path, meta, qid)
        boxes = [check_box_xywh(b, image.width, image.height, path, qid) for b in meta.get("bbox") or []]
        order = list(range(len(options)))
        random.Random(f"{self.args.seed}:{qid}").shuffle(order)
        shuffled = [options[i] for i in order]
        answer = chr(ord("A") + order.index(0))
        extra = {
            "split": SPLIT,
            "question": question,
            "answer": answer,
            "options": shuffled,
            "answer_type": "multiple_choice",
            "category": category,
            "source_id": qid,
            "evidence_boxes": boxes or None,
        }
        row = build_row(
            data_source=VSTAR,
            messages=vqa_messages(question, shuffled, self.args.protocol),
            image=image.embedded() if self.args.embed_images else image,
            ability="vqa",
            ground_truth=answer,
            extra_info=extra,
            use_tool=True,
        )
        return VSTAR, row

    def image(self, path: Path, meta: dict[str, Any], qid: str) -> ImageRef:
        named = meta.get("image")
        if isinstance(named, str) and named:
            candidates = [resolve_in_root(self.args.root, f"{path.parent.name}/{named}", path, qid)]
        else:
            candidates = [path.with_suffix(s) for s in IMAGE_SUFFIXES]
        image_path = next((c for c in candidates if c.is_file()), candidates[0])
        info = probe_file(image_path, path, qid)
        return ImageRef(image_path.resolve(), info.width, info.height)


def main(args: argparse.Namespace) -> cli.Summary:
    if not args.root.is_dir():
        raise DataPrepError(f"{args.root}: V* Bench folder not found")
    files = list(annotations(args.root))
    if not files:
        raise DataPrepError(f"{args.root}: no <category>/<name>.json annotations found")
    return cli.convert(
        files,
        VstarConverter(args).build,
        out_dir=args.out,
        schema=ANSWER_SCHEMA,
        skip_bad=args.skip_bad,
        limit=args.limit,
        total=len(files),
        desc=VSTAR,
    )


if __name__ == "__main__":
    cli.run(build_parser(), main)
