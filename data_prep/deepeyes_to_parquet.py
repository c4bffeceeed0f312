"""Convert the DeepEyes RL parquet files (DeepEyes-Datasets-47k) to VQA training rows with the zoom tool.

Reads DeepEyes' parquet files as released, and as veRL's own DeepEyes preprocessing rewrites them: columns
prompt, images (embedded bytes), ability, env_name, reward_model.ground_truth, extra_info (a struct, or the
same as a JSON string) with question. Each input <stem>.parquet becomes <out>/<stem>.parquet with
data_source deepeyes_<stem>, this project's prompts and the zoom tool's kwargs. Images are written once each
under <out>/images/<stem>/ (named by content hash) and referenced by path; --embed-images keeps them in the
parquet. Option lines at the end of a question (A. ... / (B) ...) are kept in extra_info.options.

Only the question reaches the prompt. It is extra_info.question (else the user turn), with the <image> tags
removed and cut before the first line (or sentence) that instructs the model how to answer: one naming a
protocol tag (<think>, <answer>, <tool_call>) or DeepEyes' tool (image_zoom_in_tool), which is how DeepEyes
appends its "Think first, call **image_zoom_in_tool** if needed ..." instruction to every question.
Rows whose env_name is not DeepEyes' visual toolbox (visual_toolbox*) get no zoom tool: single_turn_agent
and no zoom system prompt (counted in the summary).

  python data_prep/deepeyes_to_parquet.py --input data_0.1.2_visual_toolbox_v2.parquet --out ~/data/deepeyes
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from verl_ext.answers import answer_type
from verl_ext.data import cli
from verl_ext.data.images import ImageStore, probe_bytes
from verl_ext.data.rows import split_options, stored_image, vqa_row
from verl_ext.data.schema import ANSWER_SCHEMA
from verl_ext.data.validation import (
    BadRecord,
    DataPrepError,
    check_options,
    check_prompt_text,
    check_text,
    optional_text,
    source_id,
)
from verl_ext.data_sources import deepeyes
from verl_ext.special_tokens import template_tokens_in

Item = tuple[Path, int, dict[str, Any]]
BATCH = 256
#: DeepEyes' environment that offers image_zoom_in_tool (visual_toolbox_v2 in the released files).
TOOL_ENV = "visual_toolbox"
#: A line of answering instructions appended to the question (DeepEyes' "Think first, call ..." line).
_INSTRUCTION = re.compile(r"<(?:think|answer|tool_call)>|image_zoom_in_tool", re.I)
_SENTENCE_END = re.compile(r"[.?!](?=\s)")
NO_TOOL_NOTE = "rows without the visual toolbox env (single turn, no zoom tool)"


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser(__doc__)
    p.add_argument("--input", type=Path, nargs="+", required=True, help="DeepEyes parquet file(s)")
    p.add_argument("--split", type=cli.split_name, default="train", help="value of extra_info.split (default: train)")
    return p


def records(files: list[Path]) -> Iterator[Item]:
    """(file, row number, record), read in batches so memory does not grow with the file."""
    for path in files:
        number = 0
        try:
            for batch in pq.ParquetFile(path).iter_batches(batch_size=BATCH):
                for record in batch.to_pylist():
                    yield path, number, record
                    number += 1
        except (OSError, ValueError) as e:  # pyarrow's ArrowInvalid/ArrowIOError: a corrupt page or footer
            raise DataPrepError(f"{path}: cannot read the parquet after row {number} ({e})") from e


def extra_info(record: dict[str, Any], path: Path, where: str) -> dict[str, Any]:
    """extra_info as a dict (stored as a struct, or as a JSON string by some exports)."""
    extra = record.get("extra_info")
    if isinstance(extra, str):
        try:
            extra = json.loads(extra)
        except ValueError as e:
            raise BadRecord(path, where, "malformed extra_info", f"not JSON: {e}") from e
    if extra is None:
        return {}
    if not isinstance(extra, dict):
        raise BadRecord(path, where, "malformed extra_info", type(extra).__name__)
    return extra


def question_of(record: dict[str, Any], extra: dict[str, Any]) -> str | None:
    """The question alone: extra_info.question (else the user turn) cut before its answering instructions.

    The cut falls at the start of the line, or of the sentence, that first names a protocol tag or the tool.
    """
    text = extra.get("question")
    if not isinstance(text, str) or not text.strip():
        turns = [m for m in record.get("prompt") or [] if isinstance(m, dict)]
        text = next((m.get("content") for m in turns if m.get("role") == "user"), None)
    if not isinstance(text, str):
        return text
    text = text.replace("<image>", "")
    match = _INSTRUCTION.search(text)
    if match is None:
        return text.strip()
    before = text[: match.start()]
    ends = [before.rfind("\n") + 1] + [m.end() for m in _SENTENCE_END.finditer(before)]
    return before[: max(ends)].strip()


class DeepEyesConverter:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.notes: Counter[str] = Counter()

    def build(self, item: Item) -> tuple[str, dict[str, Any]]:
        path, number, record = item
        where = f"row {number}"
        extra = extra_info(record, path, where)
        images = record.get("images") or []
        if len(images) != 1 or not isinstance(images[0], dict) or not images[0].get("bytes"):
            raise BadRecord(path, where, "expected exactly one embedded image", f"{len(images)} images")
        data = images[0]["bytes"]
        info = probe_bytes(data, path, where)
        question = check_prompt_text(question_of(record, extra), path, where, "question")
        answer = check_text((record.get("reward_model") or {}).get("ground_truth"), path, where, "ground truth")
        category = optional_text(record.get("data_source"), path, where, "data_source")
        ability = optional_text(record.get("ability"), path, where, "ability") or "vqa"
        env = optional_text(record.get("env_name"), path, where, "env_name")
        stem, options = split_options(question)
        letter = answer.strip("()").upper()
        if options and len(letter) == 1 and "A" <= letter < chr(ord("A") + len(options)):
            options = check_options(options, path, where)
            question, answer, kind = stem, letter, "multiple_choice"
        else:
            options = []
            kind = answer_type(answer)
            kind = "math" if kind == "open" and "math" in ability.lower() else kind
        use_tool = env is not None and env.startswith(TOOL_ENV)
        image = stored_image(data, info, self.args.embed_images, ImageStore(self.args.out / "images" / path.stem))
        index = source_id(number if extra.get("index") is None else extra["index"], path, where)
        row = vqa_row(
            data_source=deepeyes(path.stem),
            question=question,
            options=options,
            answer=answer,
            answer_type=kind,
            image=image,
            protocol=self.args.protocol if use_tool else None,
            extra_info={
                "split": self.args.split,
                "category": category,
                "source_id": index,
            },
            ability=ability,
        )
        if not use_tool:
            self.notes[NO_TOOL_NOTE] += 1
        return path.stem, row


def main(args: argparse.Namespace) -> cli.Summary:
    for path in args.input:
        if not path.is_file():
            raise DataPrepError(f"{path}: missing DeepEyes parquet file")
    stems = [p.stem for p in args.input]
    for path in args.input:
        if template_tokens_in(path.stem):
            raise DataPrepError(f"{path}: the file name (it names the data source) spells a chat-template token")
    if len(set(stems)) != len(stems):
        raise DataPrepError(f"input files must have distinct names (they name the outputs): {stems}")
    total = 0
    for path in args.input:
        try:
            total += pq.ParquetFile(path).metadata.num_rows
        except Exception as e:
            raise DataPrepError(f"{path}: cannot read parquet ({e})") from e
    converter = DeepEyesConverter(args)
    return cli.convert(
        records(args.input),
        converter.build,
        out_dir=args.out,
        schema=ANSWER_SCHEMA,
        skip_bad=args.skip_bad,
        outputs=stems,
        folders=[] if args.embed_images else [f"images/{s}" for s in stems],
        overwrite=args.overwrite,
        notes=converter.notes,
        limit=args.limit,
        total=total,
        desc="deepeyes",
    )


if __name__ == "__main__":
    cli.run(build_parser(), main)
