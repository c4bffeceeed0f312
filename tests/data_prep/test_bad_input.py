"""Hostile input through the converter CLIs: every bad record is named and counted, never a traceback or a loss.

Each converter gets one file mixing several kinds of bad records; under --skip-bad the books must balance
(records read = rows written + records skipped) with each reason counted, and the good rows must be exact.
"""

from __future__ import annotations

import base64
import io
import json
import pickle
import re
import struct
import zlib
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from dp_fixtures import REFS, hr_bench_records, jpeg_bytes, read_rows, run_main, write_refcoco, write_tsv, write_vstar
from PIL import Image


def skipped(stdout: str) -> Counter[str]:
    """The skip reasons and counts of a summary line ``skipped N records (reason: n, ...)``."""
    match = re.search(r"skipped \d+ records \((.*)\)", stdout)
    return Counter({k.strip(): int(v) for k, v in re.findall(r"([^,:]+): (\d+)", match.group(1))} if match else {})


def balance(stdout: str) -> tuple[int, int, int]:
    books = re.search(r"records read (\d+) = rows written (\d+) \+ records skipped (\d+)", stdout)
    read, written, skip = (int(n) for n in books.groups())
    assert read == written + skip
    return read, written, skip


def bomb_png() -> bytes:
    """A PNG whose header claims 20000x20000 pixels: PIL refuses to open it (a decompression bomb)."""
    buf = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    ihdr = bytes(data[12:16]) + struct.pack(">II", 20000, 20000) + bytes(data[24:29])
    data[16:24] = struct.pack(">II", 20000, 20000)
    data[29:33] = struct.pack(">I", zlib.crc32(ihdr))
    return bytes(data)


def test_refcoco_mixed_bad_refs(tmp_path: Path) -> None:
    paths = write_refcoco(tmp_path)
    refs = pickle.loads(paths["refs"].read_bytes())

    def ref(ref_id: int, sentences: object, **over: object) -> dict:
        return {"ref_id": ref_id, "ann_id": 1001, "image_id": 101, "split": "val", "sentences": sentences, **over}

    def sent(sent_id: int, text: str) -> dict:
        return {"sent_id": sent_id, "sent": text, "raw": text}

    refs += [
        ref(6, [sent(61, "car")], image_id=101, ann_id=1002),  # annotation 1002 is on image 102
        ref(7, []),
        dict(refs[1]),  # ref 2 again, identical
        ref(8, ["a sentence that is a string"]),
        "not a ref",
        ref(9, [sent(91, "left")], ann_id=[1001]),
        ref(10, [sent(101, "left")], split="train/../x"),
        ref(11, [sent(111, "the <video> man")]),
        ref(12, [sent(121, "<image> the left man")]),
    ]
    paths["refs"].write_bytes(pickle.dumps(refs))
    args = ("--refer-root", paths["refer"], "--image-root", paths["images"], "--out", tmp_path / "out")
    proc = run_main("refcoco_to_parquet.py", *args, check=False)
    assert proc.returncode == 2
    assert f"{paths['refs']}: record ref_id 6 sent_id 61: ref and annotation name different images" in proc.stderr
    proc = run_main("refcoco_to_parquet.py", *args, "--skip-bad")
    assert balance(proc.stdout) == (18, 10, 8)
    assert skipped(proc.stdout) == {
        "ref and annotation name different images": 1,
        "ref without sentences": 1,
        "duplicate ref": 1,
        "malformed sentence": 1,
        "ref is not a dict": 1,
        "malformed ann_id": 1,
        "malformed split": 1,
        "media tag in text": 1,
    }
    val = read_rows(tmp_path / "out" / "val.parquet")
    assert [r["extra_info"]["ref_id"] for r in val] == [3, 3, 12]
    assert val[-1]["extra_info"]["expression"] == "the left man"
    assert val[-1]["prompt"][0]["content"].count("<image>") == 1
    assert len(read_rows(tmp_path / "out" / "train.parquet")) == sum(len(s) for *_, sp, s in REFS if sp == "train")


def test_hr_bench_mixed_bad_rows_and_image_references(tmp_path: Path) -> None:
    records = hr_bench_records(rows=13)
    records[0]["answer"] = "E"  # skipped, but its image is still there for row 1
    records[1]["image"] = "0"
    records[2]["image"] = "!!not-base64!!"
    records[3]["image"] = "2"  # reuses a bad image: says so
    records[4].update(C="NaN", D="white")  # pandas would read "NaN" as missing: D would become C
    records[5].update(D=None, answer="C")  # trailing empty option: three options
    records[6].update(A="red", B="Red")
    records[7]["question"] = "What does the <audio> say?"
    records[8]["question"] = "QQBAD"
    records[9]["image"] = "99"
    records[10]["image"] = base64.b64encode(bomb_png()).decode()
    records[11]["question"] = "<image>\nWhat is it?"
    records[12]["index"] = 1
    tsv = tmp_path / "hr_bench_4k.tsv"
    write_tsv(tsv, records)
    tsv.write_bytes(tsv.read_bytes().replace(b"QQBAD", b"caf\xe9?"))  # Latin-1, not UTF-8
    proc = run_main("hr_bench_to_parquet.py", "--tsv", tsv, "--out", tmp_path / "out", "--skip-bad")
    assert balance(proc.stdout) == (13, 3, 10)
    assert skipped(proc.stdout) == {
        "answer is not an option letter": 1,
        "image is not valid base64": 1,
        "image refers to a row with a bad image": 1,
        "empty option before a given one": 1,
        "duplicate options": 1,
        "media tag in text": 1,
        "text is not UTF-8": 1,
        "image refers to an unknown row": 1,
        "unreadable image": 1,
        "duplicate index": 1,
    }
    rows = read_rows(tmp_path / "out" / "hr_bench_4k.parquet")
    assert [r["extra_info"]["source_id"] for r in rows] == ["1", "5", "11"]
    assert Path(rows[0]["images"][0]["path"]).read_bytes() == base64.b64decode(records[0]["image"])
    assert rows[1]["extra_info"]["options"] == ["red", "blue", "green"]
    assert rows[2]["extra_info"]["question"] == "What is it?"


def test_vstar_mixed_bad_annotations(tmp_path: Path) -> None:
    root = tmp_path / "vstar"
    write_vstar(root)
    meta = {"question": "What about the cup?", "options": ["left", "right"], "bbox": [[1, 1, 5, 5]]}
    (tmp_path / "outside.jpg").write_bytes(jpeg_bytes(50, 40))
    (root / "relative_position" / "sb_1.jpg").symlink_to(tmp_path / "outside.jpg")
    bad = {
        "sb_1": meta,
        "sb_2": {**meta, "options": ["left", "Left."]},
        "sb_3": meta,
        "sb_4": {**meta, "bbox": 5},
        "sb_5": meta,
        "sb_6": {**meta, "question": "Is the <video> playing?"},
    }
    for name, content in bad.items():
        if name != "sb_1":
            (root / "relative_position" / f"{name}.jpg").write_bytes(jpeg_bytes(50, 40))
        (root / "relative_position" / f"{name}.json").write_text(json.dumps(content))
    (root / "relative_position" / "sb_3.json").write_bytes(b'{"question": "caf\xe9?"}')
    (root / "relative_position" / "sb_5.json").write_bytes(b"\xef\xbb\xbf" + json.dumps(meta).encode())
    proc = run_main("vstar_to_parquet.py", "--root", root, "--out", tmp_path / "out", "--skip-bad")
    assert balance(proc.stdout) == (10, 6, 4)
    assert skipped(proc.stdout) == {
        "image path escapes the image root": 1,
        "duplicate options": 1,
        "unreadable annotation JSON": 1,
        "media tag in text": 1,
    }
    assert "note: malformed evidence boxes left out: 1" in proc.stdout
    ids = [r["extra_info"]["source_id"] for r in read_rows(tmp_path / "out" / "vstar.parquet")]
    assert "relative_position/sb_4" in ids and "relative_position/sb_5" in ids


def _deepeyes_file(path: Path, rows: list[dict], extra_as_text: bool = False, source_type=None) -> None:
    source_type = source_type or pa.string()
    extra = pa.string() if extra_as_text else pa.struct([("question", pa.string()), ("index", pa.string())])
    schema = pa.schema(
        [
            ("data_source", source_type),
            ("prompt", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
            ("images", pa.list_(pa.struct([("bytes", pa.binary()), ("path", pa.string())]))),
            ("env_name", pa.string()),
            ("reward_model", pa.struct([("ground_truth", pa.string())])),
            ("extra_info", extra),
        ]
    )
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)


def _deepeyes_row(k: int, question: str, truth: str = "yes", data_source: object = "chart", **over: object) -> dict:
    return {
        "data_source": data_source,
        "prompt": [{"role": "user", "content": f"<image>\n{question}"}],
        "images": [{"bytes": jpeg_bytes(40, 30, k), "path": None}],
        "env_name": "visual_toolbox_v2",
        "reward_model": {"ground_truth": truth},
        "extra_info": {"question": question, "index": str(k)},
        **over,
    }


def test_deepeyes_mixed_bad_rows_and_files(tmp_path: Path) -> None:
    truncated = _deepeyes_row(1, "Is it red?")
    truncated["images"][0]["bytes"] = truncated["images"][0]["bytes"][:-100]
    _deepeyes_file(
        tmp_path / "a.parquet",
        [
            _deepeyes_row(0, "Is it red?"),
            truncated,
            _deepeyes_row(2, "Think first, call **image_zoom_in_tool** if needed."),  # nothing but the instruction
            _deepeyes_row(3, "Is the <video> on?"),
            _deepeyes_row(4, "Which pet?\nA. cat\nB. Cat", truth="B"),
        ],
    )
    as_text = [_deepeyes_row(5, "Is it blue?"), _deepeyes_row(6, "Is it green?")]
    as_text[0]["extra_info"] = json.dumps({"question": "Is it blue?", "index": "5"})
    as_text[1]["extra_info"] = "{not json"
    _deepeyes_file(tmp_path / "b.parquet", as_text, extra_as_text=True)
    _deepeyes_file(tmp_path / "c.parquet", [_deepeyes_row(7, "Is it?", data_source=7)], source_type=pa.int64())
    files = [tmp_path / f"{n}.parquet" for n in "abc"]
    proc = run_main("deepeyes_to_parquet.py", "--input", *files, "--out", tmp_path / "out", "--skip-bad")
    assert balance(proc.stdout) == (8, 2, 6)
    assert skipped(proc.stdout) == {
        "truncated image": 1,
        "missing question": 1,
        "media tag in text": 1,
        "duplicate options": 1,
        "malformed extra_info": 1,
        "malformed data_source": 1,
    }
    (row,) = read_rows(tmp_path / "out" / "b.parquet")
    assert row["extra_info"]["question"] == "Is it blue?" and row["extra_info"]["source_id"] == "5"


def test_deepeyes_corrupt_parquet_page_names_the_file(tmp_path: Path) -> None:
    src = tmp_path / "big.parquet"
    rows = [_deepeyes_row(k % 3, f"Question number {k} about the picture? " * 8) for k in range(600)]
    _deepeyes_file(src, rows)
    data = bytearray(src.read_bytes())
    for k in range(len(data) // 3, 2 * len(data) // 3):
        data[k] ^= 0x5A
    src.write_bytes(bytes(data))
    proc = run_main("deepeyes_to_parquet.py", "--input", src, "--out", tmp_path / "out", "--skip-bad", check=False)
    assert proc.returncode == 2 and f"error: {src}: cannot read the parquet after row" in proc.stderr
    assert not list((tmp_path / "out").glob("*.parquet")) and not (tmp_path / "out" / "images").exists()


def test_visual_cot_mixed_bad_lines(tmp_path: Path) -> None:
    (tmp_path / "img" / "gqa").mkdir(parents=True)
    (tmp_path / "img" / "gqa" / "1.jpg").write_bytes(jpeg_bytes(100, 80, 1))

    def rec(**over: object) -> bytes:
        base = {"image": "gqa/1.jpg", "question": "Is it red?", "answer": "yes", "bboxs": [[5, 6, 50, 60]]}
        return json.dumps({**base, **over}).encode()

    lines = [
        b"\xef\xbb\xbf" + rec(question_id=1),
        b'{"image": "gqa/1.jpg", "question": "caf\xe9?"}',
        b'{"image": "gqa/1.jpg", "question": ',
        b"[1, 2]",
        rec(question="What is <image> this?", answer="a cup", question_id=5),
        rec(question="Is the <video> on?"),
        rec(dataset=5),
        rec(image="gqa/missing.jpg"),
        json.dumps(
            {
                "image": ["gqa/1.jpg", "gqa/1.jpg###[1, 2, 3, 4]"],
                "conversations": [
                    {"from": "human", "value": "<image>\nQ?"},
                    {"from": "gpt", "value": "[0.1, 0.1, 0.2, 0.2]"},
                ],
            }
        ).encode(),
        rec(bboxs=[[1, 2, 3]], question_id=10),
        json.dumps({"image": "x.png", "problem": "", "solution": ["left dog"], "bboxs": [[0, 0, 5, 5]]}).encode(),
        b"",
    ]
    src = tmp_path / "mixed.jsonl"
    src.write_bytes(b"\n".join(lines) + b"\n")
    args = ("--input", src, "--image-root", tmp_path / "img", "--out", tmp_path / "out", "--skip-bad")
    proc = run_main("visual_cot_to_parquet.py", *args)
    assert balance(proc.stdout) == (11, 3, 8)
    assert skipped(proc.stdout) == {
        "text is not UTF-8": 1,
        "invalid JSON": 1,
        "record is not a JSON object": 1,
        "media tag in text": 1,
        "malformed dataset": 1,
        "missing image": 1,
        "missing answer": 1,
        "not a VQA record": 1,
    }
    assert "note: malformed evidence boxes left out: 1" in proc.stdout
    rows = read_rows(tmp_path / "out" / "mixed.parquet")
    assert [r["extra_info"]["source_id"] for r in rows] == ["1", "5", "10"]
    assert rows[1]["extra_info"]["question"] == "What is this?"
    assert rows[1]["prompt"][1]["content"].count("<image>") == 1
    assert rows[2]["extra_info"]["evidence_boxes"] is None
