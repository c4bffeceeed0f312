"""Convert the DeepEyes RL parquet files (DeepEyes-Datasets-47k) to VQA training rows with the zoom tool.

Needs one or more DeepEyes parquet files (columns prompt, images with embedded bytes, reward_model with
ground_truth, extra_info with question). Each input <stem>.parquet becomes <out>/<stem>.parquet with
data_source deepeyes_<stem>, this project's prompts and the zoom tool's kwargs. Images are written once
each under <out>/images/<stem>/ (named by content hash) and referenced by path; --embed-images keeps them
in the parquet. Option lines at the end of a question (A. ... / (B) ...) are kept in extra_info.options.

  python data_prep/deepeyes_to_parquet.py --input data_0.1.2_visual_toolbox_v2.parquet --out ~/data/deepeyes
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from verl_ext.answers import answer_type
from verl_ext.data import cli
from verl_ext.data.images import ImageStore, probe_bytes
from verl_ext.data.rows import build_row, split_options, stored_image, vqa_messages
from verl_ext.data.schema import ANSWER_SCHEMA
from verl_ext.data.validation import BadRecord, DataPrepError, check_text
from verl_ext.data_sources import deepeyes

Item = tuple[Path, int, dict[str, Any]]
BATCH = 256


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser(__doc__)
    p.add_argument("--input", type=Path, nargs="+", required=True, help="DeepEyes parquet file(s)")
    p.add_argument("--split", default="train", help="value of extra_info.split (default: train)")
    return p


def records(files: list[Path]) -> Iterator[Item]:
    """(file, row number, record), read in batches so memory does not grow with the file."""
    for path in files:
        number = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=BATCH):
            for record in batch.to_pylist():
                yield path, number, record
                number += 1


def question_of(record: dict[str, Any]) -> str | None:
    """The question: extra_info.question, else the user turn without its <image> tag."""
    extra = record.get("extra_info") or {}
    if isinstance(extra.get("question"), str) and extra["question"].strip():
        return extra["question"].replace("<image>", "").strip()
    for message in record.get("prompt") or []:
        if isinstance(message, dict) and message.get("role") == "user" and isinstance(message.get("content"), str):
            return message["content"].replace("<image>", "").strip()
    return None


class DeepEyesConverter:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args

    def build(self, item: Item) -> tuple[str, dict[str, Any]]:
        path, number, record = item
        where = f"row {number}"
        images = record.get("images") or []
        if len(images) != 1 or not isinstance(images[0], dict) or not images[0].get("bytes"):
            raise BadRecord(path, where, "expected exactly one embedded image", f"{len(images)} images")
        data = images[0]["bytes"]
        info = probe_bytes(data, path, where)
        image = stored_image(data, info, self.args.embed_images, ImageStore(self.args.out / "images" / path.stem))
        question = check_text(question_of(record), path, where, "question")
        answer = check_text((record.get("reward_model") or {}).get("ground_truth"), path, where, "ground truth")
        stem, options = split_options(question)
        letter = answer.strip("()").upper()
        if options and len(letter) == 1 and "A" <= letter < chr(ord("A") + len(options)):
            question, answer, kind = stem, letter, "multiple_choice"
        else:
            options = []
            ability = str(record.get("ability") or "")
            kind = answer_type(answer)
            kind = "math" if kind == "open" and "math" in ability.lower() else kind
        source_id = (record.get("extra_info") or {}).get("index")
        extra = {
            "split": self.args.split,
            "question": question,
            "answer": answer,
            "options": options or None,
            "answer_type": kind,
            "category": record.get("data_source"),
            "source_id": str(source_id if source_id is not None else number),
        }
        row = build_row(
            data_source=deepeyes(path.stem),
            messages=vqa_messages(question, options, self.args.protocol),
            image=image,
            ability=str(record.get("ability") or "vqa"),
            ground_truth=answer,
            extra_info=extra,
            use_tool=True,
        )
        return path.stem, row


def main(args: argparse.Namespace) -> cli.Summary:
    for path in args.input:
        if not path.is_file():
            raise DataPrepError(f"{path}: missing DeepEyes parquet file")
    stems = [p.stem for p in args.input]
    if len(set(stems)) != len(stems):
        raise DataPrepError(f"input files must have distinct names (they name the outputs): {stems}")
    try:
        total = sum(pq.ParquetFile(p).metadata.num_rows for p in args.input)
    except Exception as e:
        raise DataPrepError(f"cannot read parquet: {e}") from e
    return cli.convert(
        records(args.input),
        DeepEyesConverter(args).build,
        out_dir=args.out,
        schema=ANSWER_SCHEMA,
        skip_bad=args.skip_bad,
        limit=args.limit,
        total=total,
        desc="deepeyes",
    )


if __name__ == "__main__":
    cli.run(build_parser(), main)
