"""Numbers from input, as JSON writes them, through the converter CLIs: whatever the number (a 400-digit integer,
1e400, NaN, -0.0), a run under --skip-bad finishes with its books balanced; a number that is not a finite float
is a reported record (or, in an evidence box, which never decides a row, a box left out and counted), never a
traceback; every number written is a finite float."""

from __future__ import annotations

import json
import math
import pickle
import tempfile
from pathlib import Path

import pytest
from dp_fixtures import jpeg_bytes, read_rows, run_main, write_refcoco
from hypothesis import example, given, settings
from hypothesis import strategies as st
from test_bad_input import _deepeyes_file, _deepeyes_row, balance, skipped

#: JSON number literals: small and huge integers, every float JSON can spell, and what Python's json also reads.
JSON_NUMBERS = st.one_of(
    st.integers(-(10**4), 10**4).map(str),
    st.integers(10**15, 10**450).flatmap(lambda n: st.sampled_from([str(n), f"-{n}"])),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1e-400", "-0.0", "2.5E+1", "1" * 400]),
)
EXAMPLES = ["1" * 400, "1e400", "NaN", "-0.0", "-Infinity"]
SETTINGS = settings(max_examples=40, deadline=None)
MALFORMED_EVIDENCE = "note: malformed evidence boxes left out: 1"


def finite(literal: str) -> bool:
    """The oracle: whether JSON's number is a finite float (Python's float() refuses integers past its range)."""
    try:
        return math.isfinite(float(json.loads(literal)))
    except OverflowError:
        return False


def examples(slots: tuple[str, ...] | None, **fixed: object):
    """The issue's numbers in every slot (``None``: the test has no slot), always run before the drawn ones."""

    def decorate(test):
        for slot in slots or [None]:
            for literal in EXAMPLES:
                test = example(literal=literal, **fixed, **({} if slot is None else {"slot": slot}))(test)
        return test

    return decorate


def run(script: str, *args: object) -> tuple[str, list[dict]]:
    """One --skip-bad run into a fresh folder: its summary (books checked) and the rows it wrote."""
    with tempfile.TemporaryDirectory() as out:
        proc = run_main(script, *args, "--out", out, "--skip-bad")
        return proc.stdout, [row for f in sorted(Path(out).glob("*.parquet")) for row in read_rows(f)]


def all_finite(values: object) -> bool:
    if isinstance(values, list):
        return all(all_finite(v) for v in values)
    return not isinstance(values, float) or math.isfinite(values)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("images")
    (root / "1.jpg").write_bytes(jpeg_bytes(100, 80, 1))
    return root


@SETTINGS
@given(slot=st.sampled_from(["bboxs", "###suffix", "bbox", "question_id"]), literal=JSON_NUMBERS, k=st.integers(0, 3))
@examples(("bboxs", "###suffix", "bbox", "question_id"), k=0)
def test_visual_cot_numbers(images: Path, slot: str, literal: str, k: int) -> None:
    box = ["5", "6", "50", "60"]
    box[k] = literal
    if slot == "bboxs":
        line = f'{{"image": "1.jpg", "question": "Is it red?", "answer": "yes", "bboxs": [[{", ".join(box)}]]}}'
    elif slot == "###suffix":
        turns = '[{"from": "human", "value": "<image>\\nIs it red?"}, {"from": "gpt", "value": "[0.1, 0.1, 0.2, 0.2]"}'
        turns += ', {"from": "gpt", "value": "yes"}]'
        line = f'{{"image": ["1.jpg", "1.jpg###[{", ".join(box)}]"], "conversations": {turns}}}'
    elif slot == "bbox":  # a number where a box should be
        line = f'{{"image": "1.jpg", "question": "Is it red?", "answer": "yes", "bbox": {literal}}}'
    else:
        line = f'{{"image": "1.jpg", "question": "Is it red?", "answer": "yes", "question_id": {literal}}}'
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "v.jsonl"
        src.write_text(line + "\n")
        stdout, rows = run("visual_cot_to_parquet.py", "--input", src, "--image-root", images)
    assert all_finite([r["extra_info"]["evidence_boxes"] or [] for r in rows])
    if slot == "question_id":
        assert balance(stdout) == ((1, 1, 0) if finite(literal) else (1, 0, 1))
        assert finite(literal) or skipped(stdout) == {"malformed id": 1}
    else:  # evidence: the row is kept either way
        assert balance(stdout) == (1, 1, 0)
        if slot == "bbox" or not finite(literal):
            assert MALFORMED_EVIDENCE in stdout and rows[0]["extra_info"]["evidence_boxes"] is None


@SETTINGS
@given(slot=st.sampled_from(["bbox", "width", "height", "problem_id"]), literal=JSON_NUMBERS, k=st.integers(0, 3))
@examples(("bbox", "width", "height", "problem_id"), k=1)
def test_refcoco_jsonl_numbers(images: Path, slot: str, literal: str, k: int) -> None:
    fields = {"bbox": ["4", "6", "20", "18"], "width": "100", "height": "80", "problem_id": "7"}
    if slot == "bbox":
        fields["bbox"][k] = literal
    else:
        fields[slot] = literal
    line = (
        f'{{"image": "1.jpg", "width": {fields["width"]}, "height": {fields["height"]}, "bboxs": '
        f'[[{", ".join(fields["bbox"])}]], "dataset": "RefCOCO/testB", "problem": "", "solution": ["the sign"], '
        f'"problem_id": {fields["problem_id"]}}}'
    )
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "r.jsonl"
        src.write_text(line + "\n")
        stdout, rows = run("refcoco_to_parquet.py", "--jsonl", src, "--image-root", images)
    read, written, _ = balance(stdout)
    assert read == 1 and all_finite([r["reward_model"]["ground_truth"] for r in rows])
    if not finite(literal):
        expected = {"bbox": "malformed box", "width": "malformed image size", "height": "malformed image size"}
        assert skipped(stdout) == {expected.get(slot, "malformed id"): 1}
    elif slot in ("width", "height"):
        size_ok = float(json.loads(literal)) == (100 if slot == "width" else 80)
        assert skipped(stdout) == ({} if size_ok else {"image size differs from the record": 1})
    elif slot == "bbox" and not written:
        assert set(skipped(stdout)) <= {"box with zero area", "box outside the image"}
    else:
        assert written == 1


@SETTINGS
@given(literal=JSON_NUMBERS, k=st.integers(0, 3))
@examples(None, k=2)
def test_vstar_evidence_numbers(literal: str, k: int) -> None:
    box = ["10", "12", "30", "20"]
    box[k] = literal
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "vstar" / "direct_attributes"
        folder.mkdir(parents=True)
        (folder / "a.jpg").write_bytes(jpeg_bytes(50, 40))
        (folder / "a.json").write_text(f'{{"question": "Which?", "options": ["x", "y"], "bbox": [[{", ".join(box)}]]}}')
        stdout, rows = run("vstar_to_parquet.py", "--root", folder.parent)
    assert balance(stdout) == (1, 1, 0) and all_finite(rows[0]["extra_info"]["evidence_boxes"] or [])
    assert finite(literal) or (MALFORMED_EVIDENCE in stdout and rows[0]["extra_info"]["evidence_boxes"] is None)


@settings(max_examples=15, deadline=None)
@given(slot=st.sampled_from(["bbox", "width"]), literal=JSON_NUMBERS)
@examples(("bbox", "width"))
def test_refcoco_instances_numbers(tmp_path_factory: pytest.TempPathFactory, slot: str, literal: str) -> None:
    """instances.json as pycocotools reads it: annotation 1001 (refs 1 and 5, five rows) and its image 101."""
    paths = write_refcoco(tmp_path_factory.mktemp("refer"))
    instances = paths["refer"] / "refcoco" / "instances.json"
    text = instances.read_text()
    if slot == "bbox":
        text = text.replace('"bbox": [4.0, 6.0, 20.5, 18.0]', f'"bbox": [4.0, {literal}, 20.5, 18.0]')
    else:
        text = text.replace('{"id": 101, "width": 64', f'{{"id": 101, "width": {literal}')
    instances.write_text(text)
    stdout, rows = run("refcoco_to_parquet.py", "--refer-root", paths["refer"], "--image-root", paths["images"])
    read, _, _ = balance(stdout)
    assert read == 9 and all_finite([r["reward_model"]["ground_truth"] for r in rows])
    if not finite(literal):
        assert skipped(stdout) == {"malformed box" if slot == "bbox" else "malformed image size": 5}


@settings(max_examples=15, deadline=None)
@given(literal=JSON_NUMBERS)
@examples(None)
def test_refcoco_refs_ids(tmp_path_factory: pytest.TempPathFactory, literal: str) -> None:
    """Ids of the refs pickle (any number JSON gives, as Python objects): an int64 integer, else a reported record."""
    paths = write_refcoco(tmp_path_factory.mktemp("refer"))
    refs = pickle.loads(paths["refs"].read_bytes())
    value = json.loads(literal)
    refs[4]["ref_id"] = value  # ref 5: two sentences
    paths["refs"].write_bytes(pickle.dumps(refs))
    stdout, rows = run("refcoco_to_parquet.py", "--refer-root", paths["refer"], "--image-root", paths["images"])
    fits = isinstance(value, int) and -(2**63) <= value < 2**63 and value not in (1, 2, 3, 4)
    assert balance(stdout) == ((9, 9, 0) if fits else (9, 7, 2))
    assert fits or set(skipped(stdout)) <= {"malformed ref_id", "ref_id repeated with different content"}


@SETTINGS
@given(literal=JSON_NUMBERS)
@examples(None)
def test_deepeyes_index_in_json_extra_info(literal: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "a.parquet"
        row = _deepeyes_row(0, "Is it red?")
        row["extra_info"] = f'{{"question": "Is it red?", "index": {literal}}}'
        _deepeyes_file(src, [row], extra_as_text=True)
        stdout, rows = run("deepeyes_to_parquet.py", "--input", src)
    assert balance(stdout) == ((1, 1, 0) if finite(literal) else (1, 0, 1))
    assert (
        rows[0]["extra_info"]["source_id"] == str(json.loads(literal))
        if rows
        else skipped(stdout) == {"malformed id": 1}
    )
