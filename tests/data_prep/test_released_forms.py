"""The converters on the data sets' files as released, written the way the public tools write them."""

from __future__ import annotations

import base64
import csv
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dp_fixtures import (
    DEEPEYES_INSTRUCTION,
    hr_bench_records,
    jpeg_bytes,
    read_rows,
    run_cli,
    run_main,
    write_tsv,
    write_vstar,
)

from verl_ext.prompts import SYSTEM_BOX, SYSTEM_NO_TOOL


@pytest.mark.parametrize("quoting", ["pandas default", "QUOTE_ALL with BOM"])
def test_hr_bench_tsv_as_vlmevalkit_writes_it(tmp_path: Path, quoting: str) -> None:
    records = hr_bench_records(rows=4)
    records[0].update(question='Which "sign" is\tshown?\nLook closely.', A='a "red" one', image="3")  # a later row
    records[1].update(C=None, D=None, answer="B")  # two options: pandas writes the missing ones empty
    tsv = tmp_path / "hr_bench_8k.tsv"
    if quoting == "pandas default":
        write_tsv(tsv, records)
        proc = run_cli("hr_bench_to_parquet.py", "--tsv", tsv, "--out", tmp_path / "out")  # the one real process
    else:
        write_tsv(tsv, records, quoting=csv.QUOTE_ALL, encoding="utf-8-sig")
        assert tsv.read_bytes().startswith(b'\xef\xbb\xbf"index"\t"question"')
        proc = run_main("hr_bench_to_parquet.py", "--tsv", tsv, "--out", tmp_path / "out")
    assert "records read 4 = rows written 4 + records skipped 0" in proc.stdout
    rows = {r["extra_info"]["source_id"]: r for r in read_rows(tmp_path / "out" / "hr_bench_8k.parquet")}
    assert list(rows) == ["1", "2", "3", "0"]  # row 0 waited for the row holding its image
    first = rows["0"]["extra_info"]
    assert first["question"] == 'Which "sign" is\tshown?\nLook closely.'
    assert first["options"] == ['a "red" one', "blue", "green", "white"] and first["answer"] == "A"
    assert rows["0"]["prompt"][1]["content"] == (
        '<image>\nWhich "sign" is\tshown?\nLook closely.\nA. a "red" one\nB. blue\nC. green\nD. white\n'
        "Answer with the option's letter."
    )
    assert rows["1"]["extra_info"]["options"] == ["red", "blue"] and rows["1"]["reward_model"]["ground_truth"] == "B"
    assert rows["0"]["images"] == rows["3"]["images"]
    assert Path(rows["0"]["images"][0]["path"]).read_bytes() == base64.b64decode(records[3]["image"])
    assert Path(rows["2"]["images"][0]["path"]).read_bytes() == base64.b64decode(records[2]["image"])


def _viscot_images(root: Path) -> None:
    for folder, name, (w, h), seed in [
        ("cot/gqa", "1.jpg", (100, 80), 1),
        ("cot/gqa", "2.jpg", (60, 60), 2),
        ("v7w", "v7w_1.jpg", (90, 70), 3),
        ("flickr30k", "104.jpg", (120, 90), 4),
    ]:
        (root / folder).mkdir(parents=True, exist_ok=True)
        (root / folder / name).write_bytes(jpeg_bytes(w, h, seed))


def _llava(image: str, box: str, question: str, answer: str, **extra: object) -> dict:
    request = " Please provide the bounding box coordinate of the region that can help you answer the question better."
    return {
        **extra,
        "image": [image, f"{image}###{box}"],
        "conversations": [
            {"from": "human", "value": f"<image>\n{question}{request}"},
            {"from": "gpt", "value": "[0.10, 0.20, 0.50, 0.60]"},  # normalised to the padded square: not evidence
            {"from": "human", "value": "<image>"},
            {"from": "gpt", "value": answer},
        ],
    }


def test_visual_cot_llava_form_takes_the_suffix_box_and_the_last_answer(tmp_path: Path) -> None:
    _viscot_images(tmp_path / "img")
    data = [
        _llava("cot/gqa/1.jpg", "[10, 8, 50, 40]", "How many cats are there?", "3", question_id="gqa_1"),
        _llava("cot/gqa/2.jpg", "[40, 30, 70, 61]", "Is it raining?", "Yes", question_id="gqa_2"),
    ]
    src = tmp_path / "viscot_363k.json"
    src.write_text(json.dumps(data))
    args = ("--input", src, "--image-root", tmp_path / "img", "--out", tmp_path / "o")
    proc = run_main("visual_cot_to_parquet.py", *args)
    assert "records read 2 = rows written 2 + records skipped 0" in proc.stdout
    assert "note: evidence boxes clamped to the image: 1" in proc.stdout
    cats, rain = read_rows(tmp_path / "o" / "viscot_363k.parquet")
    assert cats["prompt"] == [
        {"role": "system", "content": SYSTEM_BOX},
        {"role": "user", "content": "<image>\nHow many cats are there?"},
    ]
    assert cats["reward_model"]["ground_truth"] == "3" and cats["extra_info"]["answer_type"] == "number"
    assert cats["extra_info"]["evidence_boxes"] == [[10.0, 8.0, 50.0, 40.0]]
    assert cats["images"][0]["path"] == str((tmp_path / "img" / "cot/gqa/1.jpg").resolve())
    assert rain["extra_info"]["evidence_boxes"] == [[40.0, 30.0, 60.0, 60.0]]  # clamped to the 60x60 image
    assert rain["extra_info"]["answer_type"] == "yes_no" and rain["extra_info"]["source_id"] == "gqa_2"


def test_visual_cot_metadata_keeps_visual7w_choices_as_multiple_choice(tmp_path: Path) -> None:
    _viscot_images(tmp_path / "img")
    meta = [
        {
            "dataset": "v7w",
            "split": "train",
            "image": "v7w/v7w_1.jpg",
            "question": "What color is the bus?",
            "answer": "Red.",
            "multiple_choices": ["Blue.", "Green.", "White."],
            "bboxs": [[1, 2, 30, 40]],
            "width": 90,
            "height": 70,
        },
        {
            "dataset": "gqa",
            "split": "train",
            "image": "cot/gqa/1.jpg",
            "question": "What is on the table?",
            "answer": "a laptop",
            "bboxs": [[5, 6, 50, 60]],
            "width": 100,
            "height": 80,
        },
    ]
    src = tmp_path / "v7w_cot_train.jsonl"
    src.write_text("\n".join(json.dumps(m) for m in meta) + "\n")
    run_main("visual_cot_to_parquet.py", "--input", src, "--image-root", tmp_path / "img", "--out", tmp_path / "o")
    v7w, gqa = read_rows(tmp_path / "o" / "v7w_cot_train.parquet")
    info, letter = v7w["extra_info"], v7w["reward_model"]["ground_truth"]
    assert sorted(info["options"]) == ["Blue.", "Green.", "Red.", "White."]
    assert info["options"][ord(letter) - ord("A")] == "Red." and info["answer"] == letter
    assert info["answer_type"] == "multiple_choice" and info["category"] == "v7w"
    assert v7w["prompt"][1]["content"].endswith("D. " + info["options"][3] + "\nAnswer with the option's letter.")
    assert gqa["extra_info"]["answer_type"] == "open" and gqa["extra_info"]["options"] is None
    assert gqa["reward_model"]["ground_truth"] == "a laptop"


def test_visual_cot_ground_r1_form_with_the_authors_absolute_paths(tmp_path: Path) -> None:
    _viscot_images(tmp_path / "img")
    records = [
        {
            "image": "/home/meng/data/Visual-CoT/cot_image_data/flickr30k/104.jpg",
            "width": 120,
            "height": 90,
            "bboxs": [[5, 6, 50, 60]],
            "dataset": "flickr30k",
            "split": "val",
            "problem": "What is the person in the green jacket doing?",
            "solution": "The person is reading a piece of paper.",
            "problem_id": 2,
        },
        {  # Ground-R1's RefCOCO subset: expressions, no question
            "image": "RefCOCO/testB/images/img_1.png",
            "width": 500,
            "height": 375,
            "bboxs": [[0.0, 0.0, 248.6, 288.2]],
            "dataset": "RefCOCO/testB",
            "problem": "",
            "solution": ["animal on left", "teddy bear left"],
            "problem_id": 1581,
        },
    ]
    src = tmp_path / "visualCoT_eval_subset150_choice.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    args = ("--input", src, "--image-root", tmp_path / "img", "--out", tmp_path / "o", "--split", "val")
    proc = run_main("visual_cot_to_parquet.py", *args, check=False)
    assert proc.returncode == 2 and "line 2: not a VQA record (Ground-R1's RefCOCO form" in proc.stderr
    proc = run_main("visual_cot_to_parquet.py", *args, "--skip-bad")
    assert "records read 2 = rows written 1 + records skipped 1" in proc.stdout
    (row,) = read_rows(tmp_path / "o" / f"{src.stem}.parquet")
    info = row["extra_info"]
    assert info["question"] == "What is the person in the green jacket doing?" and info["split"] == "val"
    assert row["reward_model"]["ground_truth"] == "The person is reading a piece of paper."
    assert info["answer_type"] == "open" and info["source_id"] == "2" and info["category"] == "flickr30k"
    assert info["evidence_boxes"] == [[5.0, 6.0, 50.0, 60.0]]
    assert row["images"][0]["path"] == str((tmp_path / "img" / "flickr30k" / "104.jpg").resolve())


def test_deepeyes_prompt_holds_only_the_question_and_env_name_decides_the_tool(tmp_path: Path) -> None:
    """Rows as veRL's DeepEyes preprocessing writes them: extra_info.question is DeepEyes' whole user turn."""
    turns = [
        ("<image>\nWhat is the color of the car?\nA. red\nB. blue" + DEEPEYES_INSTRUCTION, "B", "visual_toolbox_v2"),
        ("<image>\nIs it raining?" + DEEPEYES_INSTRUCTION, "yes", None),
        ("<image>\nHow tall is it in m? " + DEEPEYES_INSTRUCTION.strip(), "3.5", "visual_toolbox_v2"),
    ]
    rows = [
        {
            "data_source": "vstar",
            "prompt": [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": u}],
            "images": [{"bytes": jpeg_bytes(70, 50, k), "path": None}],
            "ability": "vqa",
            "env_name": env,
            "reward_model": {"ground_truth": gt, "style": "model"},
            "extra_info": {"answer": gt, "index": str(k), "question": u, "split": "train"},
        }
        for k, (u, gt, env) in enumerate(turns)
    ]
    src = tmp_path / "data_0.1.2_visual_toolbox_v2.parquet"
    pq.write_table(pa.Table.from_pylist(rows), src)
    proc = run_main("deepeyes_to_parquet.py", "--input", src, "--out", tmp_path / "o")
    assert "note: rows without the visual toolbox env (single turn, no zoom tool): 1" in proc.stdout
    car, rain, tall = read_rows(tmp_path / "o" / f"{src.stem}.parquet")
    assert car["prompt"] == [
        {"role": "system", "content": SYSTEM_BOX},
        {
            "role": "user",
            "content": "<image>\nWhat is the color of the car?\nA. red\nB. blue\nAnswer with the option's letter.",
        },
    ]
    assert car["extra_info"]["question"] == "What is the color of the car?"
    assert car["agent_name"] == "ground_r1_tool_agent"
    assert rain["prompt"] == [
        {"role": "system", "content": SYSTEM_NO_TOOL},  # the reward's turn format, without the zoom tool
        {"role": "user", "content": "<image>\nIs it raining?"},
    ]
    assert rain["agent_name"] == "single_turn_agent" and rain["extra_info"]["answer_type"] == "yes_no"
    assert tall["extra_info"]["question"] == "How tall is it in m?"  # the instruction on the question's own line
    assert tall["extra_info"]["answer_type"] == "number"


def test_vstar_target_boxes_are_clamped_never_a_reason_to_drop(tmp_path: Path) -> None:
    write_vstar(tmp_path / "vstar")
    outside = tmp_path / "vstar" / "direct_attributes" / "sa_00.json"
    meta = json.loads(outside.read_text())
    outside.write_text(json.dumps({**meta, "bbox": [[100, 80, 40, 20], [10, 12, 30, 20]]}))  # 120x90 image
    malformed = tmp_path / "vstar" / "direct_attributes" / "sa_01.json"
    malformed.write_text(json.dumps({**json.loads(malformed.read_text()), "bbox": 5}))
    proc = run_main("vstar_to_parquet.py", "--root", tmp_path / "vstar", "--out", tmp_path / "o")
    assert "records read 4 = rows written 4 + records skipped 0" in proc.stdout
    assert "note: evidence boxes clamped to the image: 1" in proc.stdout
    assert "note: malformed evidence boxes left out: 1" in proc.stdout
    rows = {r["extra_info"]["source_id"]: r["extra_info"] for r in read_rows(tmp_path / "o" / "vstar.parquet")}
    assert rows["direct_attributes/sa_00"]["evidence_boxes"] == [[100.0, 80.0, 120.0, 90.0], [10.0, 12.0, 40.0, 32.0]]
    assert rows["direct_attributes/sa_01"]["evidence_boxes"] is None


def test_refcoco_from_ground_r1_jsonl_one_row_per_expression(tmp_path: Path) -> None:
    from PIL import Image

    for folder, size in [("RefCOCO/testB/images", (64, 48)), ("RefCOCO+/val/images", (80, 56))]:
        (tmp_path / "img" / folder).mkdir(parents=True)
        Image.new("RGB", size, (10, 20, 30)).save(tmp_path / "img" / folder / "img_1.png")
    base = {"problem": "", "width": 64, "height": 48, "bboxs": [[4.0, 6.0, 20.5, 18.0]]}
    records = [
        {
            **base,
            "image": "RefCOCO/testB/images/img_1.png",
            "dataset": "RefCOCO/testB",
            "problem_id": 1581,
            "solution": ["animal on left", "teddy bear left"],
        },
        {
            **base,
            "image": "/home/meng/data/RefCOCO+/val/images/img_1.png",
            "width": 80,
            "height": 56,
            "dataset": "RefCOCO+/val",
            "problem_id": 7,
            "solution": ["the man"],
        },
        {**base, "image": "RefCOCO/testB/images/img_1.png", "dataset": "Flickr/val", "solution": ["x"]},
        {**base, "image": "RefCOCO/testB/images/img_1.png", "dataset": "RefCOCO/testB", "width": 65, "solution": ["y"]},
    ]
    src = tmp_path / "RefCOCO_eval_subset_1000.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    args = ("--jsonl", src, "--image-root", tmp_path / "img", "--out", tmp_path / "o", "--skip-bad")
    proc = run_main("refcoco_to_parquet.py", *args)
    assert "records read 5 = rows written 3 + records skipped 2" in proc.stdout
    assert "unknown data set: 1" in proc.stdout and "image size differs from the record: 1" in proc.stdout
    rows = read_rows(tmp_path / "o" / "refcoco_testB.parquet")
    assert [r["extra_info"]["expression"] for r in rows] == ["animal on left", "teddy bear left"]
    for k, row in enumerate(rows):
        assert row["data_source"] == "refcoco" and row["reward_model"]["ground_truth"] == [4.0, 6.0, 24.5, 24.0]
        assert row["extra_info"]["split"] == "testB" and row["extra_info"]["source_id"] == "1581"
        assert row["extra_info"]["sent_id"] == k and row["agent_name"] == "single_turn_agent"
    (plus,) = read_rows(tmp_path / "o" / "refcoco+_val.parquet")
    assert plus["data_source"] == "refcoco+" and plus["extra_info"]["expression"] == "the man"
    assert plus["images"][0]["path"] == str((tmp_path / "img" / "RefCOCO+/val/images/img_1.png").resolve())
