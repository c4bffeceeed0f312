"""The ``data_source`` names shared by the data-prep scripts (writers) and the rewards (dispatch)."""

from __future__ import annotations

#: RefCOCO family: the answer is a box, scored by IoU in original pixels.
GROUNDING = ("refcoco", "refcoco+", "refcocog")
#: Evaluation sets (multiple choice, the ground truth is the correct letter).
HR_BENCH_4K = "hr_bench_4k"
HR_BENCH_8K = "hr_bench_8k"
VSTAR = "vstar"
#: VQA training data with the zoom tool enabled.
VISUAL_COT = "visual_cot"
DEEPEYES_PREFIX = "deepeyes_"


def deepeyes(stem: str) -> str:
    """``data_source`` of a row converted from the DeepEyes parquet file named ``<stem>.parquet``."""
    return f"{DEEPEYES_PREFIX}{stem}"
