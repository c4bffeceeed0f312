"""HR-Bench, V*, DeepEyes and Visual-CoT converters on fixtures in their real formats."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from dp_fixtures import (
    hr_bench_records,
    jpeg_bytes,
    read_rows,
    run_main,
    write_deepeyes,
    write_hr_bench,
    write_tsv,
    write_vstar,
)

from verl_ext.prompts import format_options


def test_hr_bench_letters_options_cycles_and_deduplicated_images(tmp_path: Path) -> None:
    tsv = tmp_path / "hr_bench_8k.tsv"
    records = write_hr_bench(tsv, rows=4)
    proc = run_main("hr_bench_to_parquet.py", "--tsv", tsv, "--out", tmp_path / "out")
    rows = read_rows(tmp_path / "out" / "hr_bench_8k.parquet")
    assert "records read 4 = rows written 4 + records skipped 0" in proc.stdout
    assert [r["reward_model"]["ground_truth"] for r in rows] == [r["answer"] for r in records]
    for row, record in zip(rows, records, strict=True):
        info = row["extra_info"]
        assert row["data_source"] == "hr_bench_8k" and row["agent_name"] == "ground_r1_tool_agent"
        assert info["options"] == ["red", "blue", "green", "white"] and info["answer_type"] == "multiple_choice"
        assert info["cycle_category"] == record["cycle_category"] and info["category"] == record["category"]
        assert format_options(info["options"]) in row["prompt"][1]["content"]
        assert (info["image_width"], info["image_height"]) == (96, 64)
        path = Path(row["images"][0]["path"])
        assert path.read_bytes() == base64.b64decode(record["image"])  # the original JPEG, not re-encoded
        assert info["tools_kwargs"]["image_zoom_in_tool"]["create_kwargs"]["image_path"] == str(path)
    assert len(list((tmp_path / "out" / "hr_bench_8k_images").iterdir())) == 2  # 4 rows share 2 images


def test_hr_bench_image_reference_bad_base64_and_wrong_letter(tmp_path: Path) -> None:
    tsv = tmp_path / "hr_bench_4k.tsv"
    records = hr_bench_records(rows=4)
    records[1]["image"] = "0"  # index 1 reuses row 0's image, as VLMEvalKit TSVs do
    records[2]["image"] = "!!!not-base64!!!"
    records[3]["answer"] = "E"
    write_tsv(tsv, records)
    proc = run_main("hr_bench_to_parquet.py", "--tsv", tsv, "--out", tmp_path / "out", check=False)
    assert proc.returncode == 2 and f"{tsv}: record index 2 (row 3): image is not valid base64" in proc.stderr
    proc = run_main("hr_bench_to_parquet.py", "--tsv", tsv, "--out", tmp_path / "out", "--skip-bad")
    assert "answer is not an option letter: 1" in proc.stdout and "image is not valid base64: 1" in proc.stdout
    rows = read_rows(tmp_path / "out" / "hr_bench_4k.parquet")
    assert [r["extra_info"]["source_id"] for r in rows] == ["0", "1"]
    assert rows[0]["images"] == rows[1]["images"]


def test_vstar_options_shuffled_with_seed_and_letter_recorded(tmp_path: Path) -> None:
    made = write_vstar(tmp_path / "vstar")
    outs = []
    for run, seed in enumerate((0, 0, 1, 2, 3)):
        out = tmp_path / f"out{run}"
        run_main("vstar_to_parquet.py", "--root", tmp_path / "vstar", "--out", out, "--seed", seed)
        rows = read_rows(out / "vstar.parquet")
        assert [r["extra_info"]["source_id"] for r in rows] == sorted(made)
        for row in rows:
            info = row["extra_info"]
            original = made[info["source_id"]]
            letter = row["reward_model"]["ground_truth"]
            assert sorted(info["options"]) == sorted(original)
            assert info["options"][ord(letter) - ord("A")] == original[0]  # the correct option was listed first
            assert info["evidence_boxes"] == [[10.0, 12.0, 40.0, 32.0]]  # xywh converted to xyxy
            assert info["category"] == info["source_id"].split("/")[0]
        outs.append([r["extra_info"]["options"] for r in rows])
    assert outs[0] == outs[1]
    assert any(o != outs[0] for o in outs[2:])
    assert any(opts[0] != made[key][0] for opts, key in zip(outs[0], sorted(made), strict=True))


def test_vstar_missing_image_names_the_annotation(tmp_path: Path) -> None:
    write_vstar(tmp_path / "vstar")
    (tmp_path / "vstar" / "relative_position" / "sa_11.jpg").unlink()
    proc = run_main("vstar_to_parquet.py", "--root", tmp_path / "vstar", "--out", tmp_path / "out", check=False)
    assert proc.returncode == 2 and "sa_11.json: record relative_position/sa_11: missing image" in proc.stderr
    assert not (tmp_path / "out" / "vstar.parquet").exists()


def test_deepeyes_rows_keep_question_options_and_answer_types(tmp_path: Path) -> None:
    src = tmp_path / "data_v0.8_visual_toolbox_v2.parquet"
    source_rows = write_deepeyes(src)
    proc = run_main("deepeyes_to_parquet.py", "--input", src, "--out", tmp_path / "out")
    assert "records read 4 = rows written 4 + records skipped 0" in proc.stdout
    rows = read_rows(tmp_path / "out" / f"{src.stem}.parquet")
    assert {r["data_source"] for r in rows} == {"deepeyes_data_v0.8_visual_toolbox_v2"}
    mc, yes_no, number, open_ = rows
    assert mc["extra_info"]["options"] == ["cat", "dog", "bird"] and mc["reward_model"]["ground_truth"] == "B"
    assert mc["extra_info"]["question"] == "What is shown 0?" and "A. cat\nB. dog" in mc["prompt"][1]["content"]
    assert [r["extra_info"]["answer_type"] for r in rows] == ["multiple_choice", "yes_no", "number", "open"]
    assert open_["reward_model"]["ground_truth"] == "a red umbrella" and open_["extra_info"]["options"] is None
    for row, source in zip(rows, source_rows, strict=True):
        assert Path(row["images"][0]["path"]).read_bytes() == source["images"][0]["bytes"]
        assert row["agent_name"] == "ground_r1_tool_agent" and row["extra_info"]["need_tools_kwargs"] is True
        assert row["extra_info"]["category"] == source["data_source"]
        assert (row["extra_info"]["image_width"], row["extra_info"]["image_height"]) == (70, 50)


def test_deepeyes_embedded_and_truncated_image(tmp_path: Path) -> None:
    src = tmp_path / "thinklite.parquet"
    write_deepeyes(src)
    import pyarrow.parquet as pq

    table = pq.read_table(src).to_pylist()
    table[2]["images"][0]["bytes"] = table[2]["images"][0]["bytes"][:-100]
    pq.write_table(pq.read_table(src).from_pylist(table, schema=pq.read_schema(src)), src)
    proc = run_main("deepeyes_to_parquet.py", "--input", src, "--out", tmp_path / "out", check=False)
    assert proc.returncode == 2 and f"{src}: record row 2: truncated image" in proc.stderr
    proc = run_main("deepeyes_to_parquet.py", "--input", src, "--out", tmp_path / "out", "--skip-bad", "--embed-images")
    assert "records read 4 = rows written 3 + records skipped 1" in proc.stdout
    rows = read_rows(tmp_path / "out" / "thinklite.parquet")
    assert rows[0]["images"][0]["bytes"] == table[0]["images"][0]["bytes"]
    assert (
        rows[0]["extra_info"]["tools_kwargs"]["image_zoom_in_tool"]["create_kwargs"]["image_bytes"]
        == (table[0]["images"][0]["bytes"])
    )


def _visual_cot_images(root: Path) -> None:
    (root / "gqa").mkdir(parents=True)
    (root / "gqa" / "1.jpg").write_bytes(jpeg_bytes(100, 80, 1))
    (root / "gqa" / "2.jpg").write_bytes(jpeg_bytes(60, 60, 2))


def test_visual_cot_jsonl_and_conversation_json(tmp_path: Path) -> None:
    _visual_cot_images(tmp_path / "img")
    flat = [
        {"image": "gqa/1.jpg", "question": "Is the cup red?", "answer": "yes", "bboxs": [[5, 6, 50, 60]]},
        {"image": "gqa/2.jpg", "question": "What is on the table?", "answer": "a laptop", "bbox": [0, 0, 60, 60]},
    ]
    (tmp_path / "gqa_cot.jsonl").write_text("\n".join(json.dumps(r) for r in flat) + "\n")
    convo = [
        {
            "question_id": 77,
            "image": "gqa/1.jpg",
            "dataset": "gqa",
            "conversations": [
                {
                    "from": "human",
                    "value": "<image>\nHow many cats? Please provide the bounding box coordinate of "
                    "the region that can help you answer the question better.",
                },
                {"from": "gpt", "value": "[0.1, 0.1, 0.5, 0.5]"},
                {"from": "human", "value": "<image>"},
                {"from": "gpt", "value": "3"},
            ],
            "bboxs": [[10, 8, 50, 40]],
        }
    ]
    (tmp_path / "viscot.json").write_text(json.dumps(convo))
    run_main(
        "visual_cot_to_parquet.py",
        "--input",
        tmp_path / "gqa_cot.jsonl",
        "--image-root",
        tmp_path / "img",
        "--out",
        tmp_path / "out",
    )
    run_main(
        "visual_cot_to_parquet.py",
        "--input",
        tmp_path / "viscot.json",
        "--image-root",
        tmp_path / "img",
        "--out",
        tmp_path / "out",
    )
    rows = read_rows(tmp_path / "out" / "gqa_cot.parquet")
    assert [r["reward_model"]["ground_truth"] for r in rows] == ["yes", "a laptop"]
    assert [r["extra_info"]["answer_type"] for r in rows] == ["yes_no", "open"]
    assert [r["extra_info"]["evidence_boxes"] for r in rows] == [[[5.0, 6.0, 50.0, 60.0]], [[0.0, 0.0, 60.0, 60.0]]]
    assert all(r["data_source"] == "visual_cot" and r["agent_name"] == "ground_r1_tool_agent" for r in rows)
    (row,) = read_rows(tmp_path / "out" / "viscot.parquet")
    assert row["extra_info"]["question"] == "How many cats?" and row["reward_model"]["ground_truth"] == "3"
    assert row["extra_info"]["answer_type"] == "number" and row["extra_info"]["source_id"] == "77"
    assert row["prompt"][1]["content"] == "<image>\nHow many cats?"


def test_visual_cot_evidence_box_clamped_and_escaping_path(tmp_path: Path) -> None:
    _visual_cot_images(tmp_path / "img")
    recs = [
        {"image": "gqa/1.jpg", "question": "q", "answer": "a", "bboxs": [[5, 6, 150, 60]]},
        {"image": "../gqa_cot.jsonl", "question": "q", "answer": "a", "bboxs": [[1, 1, 2, 2]]},
        {"image": "gqa/2.jpg", "question": "q", "answer": "a", "bboxs": [[1, 1, 2, 2]]},
    ]
    src = tmp_path / "gqa_cot.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    args = ("--input", src, "--image-root", tmp_path / "img", "--out", tmp_path / "out")
    proc = run_main("visual_cot_to_parquet.py", *args, check=False)
    assert proc.returncode == 2 and f"{src}: record line 2: image path escapes the image root" in proc.stderr
    proc = run_main("visual_cot_to_parquet.py", *args, "--skip-bad")
    assert "image path escapes the image root: 1" in proc.stdout
    assert "note: evidence boxes clamped to the image: 1" in proc.stdout
    rows = read_rows(tmp_path / "out" / "gqa_cot.parquet")
    assert [r["extra_info"]["evidence_boxes"] for r in rows] == [[[5.0, 6.0, 100.0, 60.0]], [[1.0, 1.0, 2.0, 2.0]]]
