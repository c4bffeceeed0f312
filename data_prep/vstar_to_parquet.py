"""Convert V* Bench (a folder per category of images and JSON annotations) to a veRL evaluation parquet.

Needs the benchmark folder: <root>/<category>/<name>.json (question, options with the correct one first,
bbox of the target objects as [x, y, w, h]) next to <name>.jpg (or .jpeg/.png). Options are shuffled
with a seed derived from --seed and the question's own name (the same shuffle whatever --limit is) and
the correct letter is recorded as ground truth. The target boxes are evidence, not the answer: they are
clamped to the image (counted in the summary), never a reason to drop a question. Duplicate option texts
and files reached through symlinks out of --root are refused. Writes <out>/vstar.parquet.

  python data_prep/vstar_to_parquet.py --root ~/vstar_bench --out ~/data/eval
"""

from __future__ import annotations

import argparse
import json
import random
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from verl_ext.data import cli
from verl_ext.data.images import probe_file, resolve_in_root
from verl_ext.data.rows import ImageRef, vqa_row
from verl_ext.data.schema import ANSWER_SCHEMA
from verl_ext.data.validation import (
    BadRecord,
    DataPrepError,
    check_options,
    check_prompt_text,
    check_tokens,
    evidence_box,
)
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
        self.notes: Counter[str] = Counter()

    def build(self, path: Path) -> tuple[str, dict[str, Any]]:
        category = path.parent.name
        qid = f"{category}/{path.stem}"
        check_tokens(qid, path, qid, "file name")
        real = resolve_in_root(self.args.root, f"{category}/{path.name}", path, qid)
        try:
            meta = json.loads(real.read_text(encoding="utf-8-sig"))
        except (OSError, ValueError) as e:
            raise BadRecord(path, qid, "unreadable annotation JSON", str(e)) from e
        if not isinstance(meta, dict):
            raise BadRecord(path, qid, "annotation is not a JSON object")
        question = check_prompt_text(meta.get("question"), path, qid, "question")
        options = meta.get("options")
        if not isinstance(options, list):
            raise BadRecord(path, qid, "options must be a list of at least two strings", repr(options)[:80])
        options = check_options([check_prompt_text(o, path, qid, "option") for o in options], path, qid)
        image = self.image(path, meta, qid)
        boxes = self.evidence(meta.get("bbox"), image)
        order = list(range(len(options)))
        random.Random(f"{self.args.seed}:{qid}").shuffle(order)
        shuffled = [options[i] for i in order]
        answer = chr(ord("A") + order.index(0))
        row = vqa_row(
            data_source=VSTAR,
            question=question,
            options=shuffled,
            answer=answer,
            answer_type="multiple_choice",
            image=image.embedded() if self.args.embed_images else image,
            protocol=self.args.protocol,
            extra_info={"split": SPLIT, "category": category, "source_id": qid, "evidence_boxes": boxes or None},
        )
        return VSTAR, row

    def evidence(self, raw: object, image: ImageRef) -> list[list[float]]:
        """The target boxes ([x, y, w, h] in the stored file) in the oriented frame, clamped; repairs are noted."""
        if raw is None:
            return []
        if not isinstance(raw, list) or not all(isinstance(box, list) for box in raw):
            raw = [raw]
        width, height = image.stored_size
        boxes = []
        for box in raw:
            clamped, note = evidence_box(box, width, height, xywh=True)
            if note:
                self.notes[note] += 1
            if clamped is not None:
                boxes.append(image.orient(clamped))
        return boxes

    def image(self, path: Path, meta: dict[str, Any], qid: str) -> ImageRef:
        named = meta.get("image")
        names = [named] if isinstance(named, str) and named else [path.stem + s for s in IMAGE_SUFFIXES]
        candidates = [resolve_in_root(self.args.root, f"{path.parent.name}/{n}", path, qid) for n in names]
        image_path = next((c for c in candidates if c.is_file()), candidates[0])
        info = probe_file(image_path, path, qid)
        return ImageRef.of(image_path, info)


def main(args: argparse.Namespace) -> cli.Summary:
    if not args.root.is_dir():
        raise DataPrepError(f"{args.root}: V* Bench folder not found")
    files = list(annotations(args.root))
    if not files:
        raise DataPrepError(f"{args.root}: no <category>/<name>.json annotations found")
    converter = VstarConverter(args)
    return cli.convert(
        files,
        converter.build,
        out_dir=args.out,
        schema=ANSWER_SCHEMA,
        skip_bad=args.skip_bad,
        outputs=[VSTAR],
        overwrite=args.overwrite,
        notes=converter.notes,
        limit=args.limit,
        total=len(files),
        desc=VSTAR,
    )


if __name__ == "__main__":
    cli.run(build_parser(), main)
