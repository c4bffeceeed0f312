"""The metric functions on hand-written records: VLMEvalKit's HR-Bench cycle averaging, failures never correct,
and the trainer's view (records_from_validation) when the trainer lacks row fields."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from verl_ext.eval.metrics import (
    hr_bench_cycle_accuracy,
    records_from_validation,
    summarize,
    validation_metrics,
)


def test_cycle_average_differs_from_pooled_and_a_category_averages_over_its_cycles():
    rows = [("c0", "single", 1.0), ("c0", "cross", 1.0), ("c0", "single", 1.0), ("c1", "single", 0.0)]
    scores = hr_bench_cycle_accuracy(rows)
    assert scores["all"] == pytest.approx((1.0 + 0.0) / 2)  # pooled would be 3/4
    assert scores["single"] == pytest.approx((1.0 + 0.0) / 2)
    assert scores["cross"] == 1.0  # only cycle c0 has a cross row
    assert scores["cycle:c0"] == 1.0 and scores["cycle:c1"] == 0.0


@settings(max_examples=50, deadline=None)
@given(st.lists(st.lists(st.booleans(), min_size=3, max_size=3), min_size=1, max_size=6))
def test_equal_cycles_make_the_cycle_average_the_pooled_accuracy(cycles):
    rows = [(f"c{k}", "single", float(hit)) for k, hits in enumerate(cycles) for hit in hits]
    pooled = sum(hit for *_, hit in rows) / len(rows)
    assert hr_bench_cycle_accuracy(rows)["all"] == pytest.approx(pooled)


def record(key: str, acc: float, failed: str | None = None, source: str = "vstar", **extra) -> dict:
    return {"data_source": source, "key": key, "acc": acc, "iou": -1.0, "failed": failed, "num_zooms": 0,
            "num_invalid_zooms": 0, "evidence_scale": 1.0, **extra}  # fmt: skip


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1, max_size=12))
def test_a_failed_sample_is_never_correct(samples):
    """Even if a failed record carries acc 1 (it never should), it counts as wrong, and in every denominator."""
    records = [record(f"q{k}", float(acc), "boom" if failed else None) for k, (acc, failed) in enumerate(samples)]
    expected = sum(acc and not failed for acc, failed in samples) / len(samples)
    summary = summarize(records)
    assert summary["vstar/acc"] == pytest.approx(expected)
    assert summary["vstar/failed"] == sum(failed for _, failed in samples)
    assert summary["vstar/n"] == len(samples)


def test_validation_records_without_row_fields_still_give_the_headline_numbers():
    """The trainer's reward extra info alone (no extra_info): HR-Bench rows form one cycle (the pooled accuracy)."""
    infos = {"acc": [1.0, 0.0, 1.0, 1.0], "iou": [-1.0, -1.0, 0.8, 0.3], "evidence_scale": [0.1, 1.0, 1.0, 0.5],
             "num_zooms": [1.0, 0.0, 0.0, 2.0]}  # fmt: skip
    sources = ["hr_bench_8k", "hr_bench_8k", "refcoco", "refcoco"]
    records = records_from_validation(sources, ["u1", "u2", "u3", "u4"], infos)
    metrics = validation_metrics(records)
    assert metrics["val-core/hr_bench_8k/acc"] == 0.5 and metrics["val-aux/hr_bench_8k/acc_pooled"] == 0.5
    assert metrics["val-core/refcoco/acc"] == 0.5  # IoU 0.8 hits, 0.3 misses
    assert metrics["val-aux/refcoco/miou"] == pytest.approx(0.55)
    assert metrics["val-aux/hr_bench_8k/zooms_per_question"] == 0.5
    assert not any(name.endswith("None/acc") for name in metrics)
