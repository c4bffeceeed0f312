"""The harness end to end against a local OpenAI-compatible server answering from a table, on V*, HR-Bench 4K and
RefCOCO sets written by the project's converters: every metric equals a value computed by hand here, and the
request after a zoom carries the crop of the original."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from eval_fixtures import (
    ChatServer,
    answer,
    hr_bench_parquet,
    images_of,
    overrides,
    read_jsonl,
    refcoco_parquets,
    run_eval,
    user_text,
    vstar_parquet,
    zoom,
)

from verl_ext.eval.metrics import records_from_validation, rows_by_uid, validation_metrics
from verl_ext.imaging import load_rgb

#: HR-Bench rows 0..6 (even: single = FSP, odd: cross = FCP): cycle_0 holds four rows, cycle_1 three.
HR_CYCLES = [0, 0, 0, 0, 1, 1, 1]
HR_CORRECT = {0, 1, 2, 3, 4}
#: The HR-Bench zoom, in the 252x168 frame the tiny bounds give a 1400x900 image (hand-computed smart_resize).
HR_ZOOM = [56, 28, 140, 84]
#: V*: row 0 zooms validly, row 1 zooms outside the image; rows 0, 1, 2 are answered right, row 3 wrong.
VSTAR_CORRECT = {0, 1, 2}
VSTAR_ZOOM = [28, 28, 84, 56]  # the 120x90 image is 112x84 to the model: maps to [30, 30, 90, 60] exactly


def wrong(letter: str) -> str:
    return "B" if letter == "A" else "A"


def scaled(box: list[float], size: tuple[int, int], resized: tuple[int, int]) -> list[float]:
    """A box in original pixels written in the model's resized frame, by hand: x * rw / W, y * rh / H."""
    (w, h), (rw, rh) = size, resized
    return [box[0] * rw / w, box[1] * rh / h, box[2] * rw / w, box[3] * rh / h]


def grounding(box: list[float] | None) -> str:
    body = "nothing" if box is None else json.dumps({"bbox_2d": box})
    return f"<think>there</think>\n<answer>{body}</answer>"


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, tiny_model_dir):
    """One run over the three sets; returns (summary, records, server, parquet rows by file stem, out dir)."""
    tmp = tmp_path_factory.mktemp("eval")
    with pytest.MonkeyPatch.context() as mp:
        files = {"vstar": vstar_parquet(tmp), "hr": hr_bench_parquet(tmp, HR_CYCLES)}
        refcoco = refcoco_parquets(tmp, mp)
    files.update({f"refcoco_{s}": refcoco[s] for s in ("val", "testA", "testB")})
    rows = {name: pq.read_table(path).to_pylist() for name, path in files.items()}
    table: dict[str, list] = {}
    for k, row in enumerate(rows["vstar"]):
        truth = row["reward_model"]["ground_truth"]
        turns = [answer(truth if k in VSTAR_CORRECT else wrong(truth))]
        if k == 0:
            turns.insert(0, zoom(VSTAR_ZOOM))
        if k == 1:
            turns.insert(0, zoom([200, 200, 300, 300]))
        table[user_text(row)] = turns
    for k, row in enumerate(rows["hr"]):
        truth = row["reward_model"]["ground_truth"]
        turns = [answer(truth if k in HR_CORRECT else wrong(truth))]
        table[user_text(row)] = [zoom(HR_ZOOM), *turns] if k == 4 else turns
    # RefCOCO (hand-computed smart_resize under the tiny bounds): 800x560 and 640x480 -> 252x168, 560x720 -> 196x252.
    val_truth, testa_truth, testb_truth = [10, 2, 40, 42], [0, 0, 56, 72], [4, 6, 24.5, 24]
    table['"the car"'] = [grounding(scaled(val_truth, (800, 560), (252, 168)))]  # IoU 1
    shifted = [17.5, 2, 47.5, 42]  # shifted by a quarter of its width: IoU = 22.5 / 37.5 = 0.6
    table['"car in the middle"'] = [grounding(scaled(shifted, (800, 560), (252, 168)))]
    table['"whole picture"'] = [grounding(scaled([0, 0, 56, 57.6], (560, 720), (196, 252)))]  # IoU 0.8
    table['"sign saying'] = [grounding(scaled(testb_truth, (640, 480), (252, 168)))]  # IoU 1
    table['"a thing"'] = [grounding(None)]  # no box: IoU 0
    out = tmp / "out"
    with ChatServer(table) as server:
        summary = run_eval(overrides(tiny_model_dir, list(files.values()), out, server.base_url))
    assert (val_truth, testa_truth) == ([*rows["refcoco_val"][0]["reward_model"]["ground_truth"]], testa_truth)
    return summary, read_jsonl(out / "trajectories.jsonl"), server, rows, out


def test_summary_file_is_the_returned_summary_with_fractions(evaluated):
    summary, records, _, _, out = evaluated
    assert json.loads((out / "summary.json").read_text()) == pytest.approx(summary)
    for name, value in summary.items():
        if name.rsplit("/", 1)[-1].startswith(("acc", "miou", "pass@")):
            assert 0.0 <= value <= 1.0, name
    assert summary["vstar/n"] == 4 and summary["hr_bench_4k/n"] == 7 and summary["refcoco/n"] == 5
    assert summary["vstar/failed"] == summary["hr_bench_4k/failed"] == summary["refcoco/failed"] == 0
    assert "| V* | HR-Bench 4K |" in (out / "summary.md").read_text()


def test_hr_bench_cycle_averaging_and_categories(evaluated):
    s = evaluated[0]
    assert s["hr_bench_4k/acc"] == pytest.approx((1 + 1 / 3) / 2)  # cycle_0: 4/4, cycle_1: 1/3
    assert s["hr_bench_4k/acc_pooled"] == pytest.approx(5 / 7)
    assert s["hr_bench_4k/FSP/acc"] == pytest.approx((1 + 1 / 2) / 2)  # single rows 0, 2 | 4, 6
    assert s["hr_bench_4k/FCP/acc"] == pytest.approx((1 + 0) / 2)  # cross rows 1, 3 | 5
    assert s["hr_bench_4k/FCP/acc_pooled"] == pytest.approx(2 / 3)
    assert s["hr_bench_4k/cycle:cycle_1/acc"] == pytest.approx(1 / 3)


def test_vstar_categories_positions_and_zoom_statistics(evaluated):
    s, _, _, rows, _ = evaluated
    assert s["vstar/acc"] == pytest.approx(3 / 4)
    categories = [r["extra_info"]["category"] for r in rows["vstar"]]
    assert categories == ["direct_attributes"] * 2 + ["relative_position"] * 2
    assert s["vstar/direct_attributes/acc"] == 1.0 and s["vstar/relative_position/acc"] == 0.5
    letters = [r["reward_model"]["ground_truth"] for r in rows["vstar"]]
    for letter in set(letters):
        assert s[f"vstar/answer_position/{letter}"] == pytest.approx(letters.count(letter) / 4)
    assert s["vstar/zooms_per_question"] == pytest.approx(2 / 4)
    assert s["vstar/invalid_zoom_share"] == pytest.approx(1 / 2)
    # Row 0's evidence is 60x30 of 120x90 = 1/6 (bin 0); the others have none (scale 1.0, bin 2), two of them right.
    assert s["vstar/scale/bin0_0-33/share"] == pytest.approx(1 / 4) and s["vstar/scale/bin0_0-33/acc"] == 1.0
    assert s["vstar/scale/bin1_33-67/share"] == 0.0 and "vstar/scale/bin1_33-67/acc" not in s
    assert s["vstar/scale/bin2_67-100/share"] == pytest.approx(3 / 4)
    assert s["vstar/scale/bin2_67-100/acc"] == pytest.approx(2 / 3)


def test_refcoco_per_expression_per_split(evaluated):
    s, records, *_ = evaluated
    assert s["refcoco/val/acc@0.5"] == 1.0 and s["refcoco/val/acc@0.75"] == 0.5
    assert s["refcoco/val/miou"] == pytest.approx((1 + 0.6) / 2)
    assert s["refcoco/testA/acc@0.5"] == 1.0 and s["refcoco/testA/acc@0.75"] == 1.0
    assert s["refcoco/testA/miou"] == pytest.approx(0.8)
    # testB: one ref, two expressions, one hit: 0.5 per expression (a per-referent "any hit" count would say 1).
    assert s["refcoco/testB/acc@0.5"] == 0.5 and s["refcoco/testB/miou"] == pytest.approx(0.5)
    shifted = next(r for r in records if r.get("expression") == "car in the middle")
    assert (shifted["resized_width"], shifted["resized_height"]) == (252, 168)
    assert shifted["answer_box_original"] == pytest.approx([17.5, 2, 47.5, 42])
    expected_model = [17.5 * 252 / 800, 2 * 168 / 560, 47.5 * 252 / 800, 42 * 168 / 560]
    assert shifted["answer_box_model"] == pytest.approx(expected_model)


def test_request_after_a_zoom_carries_the_crop_of_the_original(evaluated):
    _, records, server, rows, _ = evaluated
    row = rows["hr"][4]
    record = next(r for r in records if r["data_source"] == "hr_bench_4k" and r["position"] == 4)
    assert (record["resized_width"], record["resized_height"]) == (252, 168)
    requests = server.requests_for(user_text(row))
    assert len(requests) == 2
    first, second = images_of(requests[0]), images_of(requests[1])
    assert len(first) == 1 and len(second) == 2
    # [56, 28, 140, 84] in 252x168 is [311.1, 150, 777.8, 450] of the 1400x900 original; whole pixels around it:
    x1, y1 = math.floor(56 * 1400 / 252), math.floor(28 * 900 / 168)
    x2, y2 = math.ceil(140 * 1400 / 252), math.ceil(84 * 900 / 168)
    assert (x1, y1, x2, y2) == (311, 150, 778, 450)
    original = load_rgb(row["images"][0]["path"])
    assert np.array_equal(np.asarray(second[1]), np.asarray(original.crop((x1, y1, x2, y2))))
    assert record["zooms"][0]["bbox_original"] == [x1, y1, x2, y2]  # the record holds the region the crop shows
    assert record["zooms"][0]["bbox_model"] == HR_ZOOM
    # The assistant turn before the crop is sent back as the model wrote it, zoom included.
    assert any(m["role"] == "assistant" and "<box>" in m["content"] for m in requests[1]["messages"])


def test_trajectory_records_carry_every_field(evaluated):
    _, records, *_ = evaluated
    assert len(records) == 4 + 7 + 5 and len({r["key"] for r in records}) == len(records)
    zoomed = next(r for r in records if r["data_source"] == "vstar" and r["position"] == 0)
    for field in ("data_source", "split", "category", "source_id", "question", "turns", "zooms", "answer", "score",
                  "acc", "iou", "failed", "ground_truth", "sample"):  # fmt: skip
        assert field in zoomed, field
    assert [t["role"] for t in zoomed["turns"]] == ["assistant", "tool", "assistant"]
    assert "<box>[28, 28, 84, 56]</box>" in zoomed["turns"][0]["text"]
    assert zoomed["turns"][1]["text"].startswith("<tool_response>")
    assert zoomed["answer"] == zoomed["ground_truth"] and zoomed["acc"] == 1.0 and zoomed["failed"] is None
    assert zoomed["zooms"][0]["bbox_original"] == pytest.approx([30, 30, 90, 60])
    invalid = next(r for r in records if r["data_source"] == "vstar" and r["position"] == 1)
    assert invalid["zooms"][0]["valid"] is False and invalid["zooms"][0]["reason"]


def test_in_training_validation_metrics_are_the_harness_numbers(evaluated):
    """The trainer's view (data sources, uids, reward extra info, extra_info) gives the same headline numbers."""
    summary, records, *_ = evaluated
    reward_infos = {k: [r[k] for r in records] for k in ("acc", "iou", "evidence_scale", "num_zooms")}
    # What veRL's _validate leaves in the dataloader's batch dicts: a uid column next to extra_info and reward_model.
    batch = {
        "uid": np.array([r["key"] for r in records], dtype=object),
        "extra_info": np.array([{k: r[k] for k in ("split", "category", "cycle_category")} for r in records]),
        "reward_model": np.array([{"ground_truth": r["ground_truth"]} for r in records]),
    }
    val = validation_metrics(
        records_from_validation(
            [r["data_source"] for r in records], [r["key"] for r in records], reward_infos, rows_by_uid([batch])
        )
    )
    core = {k: v for k, v in val.items() if k.startswith("val-core/")}
    assert core == pytest.approx(
        {
            "val-core/vstar/acc": summary["vstar/acc"],
            "val-core/hr_bench_4k/acc": summary["hr_bench_4k/acc"],
            "val-core/refcoco/acc": summary["refcoco/acc"],
            **{f"val-core/refcoco/{s}/acc@0.5": summary[f"refcoco/{s}/acc@0.5"] for s in ("val", "testA", "testB")},
        }
    )
    assert val["val-aux/hr_bench_4k/FCP/acc"] == summary["hr_bench_4k/FCP/acc"]
    assert val["val-aux/vstar/scale/bin0_0-33/share"] == summary["vstar/scale/bin0_0-33/share"]


def test_out_dir_holds_every_output(evaluated):
    out: Path = evaluated[4]
    # Every output, the lock, and no temporaries left behind.
    assert sorted(p.name for p in out.iterdir() if p.is_file()) == [
        "report.html", "run.json", "run.lock", "summary.json", "summary.md", "trajectories.jsonl",
    ]  # fmt: skip
