"""Every ``data_source`` the project writes and how the reward scores it, in one table.

Data prep imports the names (writers); the reward dispatches on :data:`SCORERS` (readers), mapping each
kind to its scorer in :mod:`verl_ext.reward.registry`. Importing this module costs nothing: the kinds are
strings, so data prep never pays for the reward's imports (ROUGE, math_verify).
"""

from __future__ import annotations

#: Scorer kinds: a box scored by IoU in original pixels, or a VQA answer scored by its answer type.
GROUNDING_SCORER = "grounding"
VQA_SCORER = "vqa"

#: RefCOCO family (grounding).
GROUNDING = ("refcoco", "refcoco+", "refcocog")
#: Evaluation sets: multiple choice, the ground truth is the correct letter.
HR_BENCH_4K = "hr_bench_4k"
HR_BENCH_8K = "hr_bench_8k"
VSTAR = "vstar"
#: VQA training data with the zoom tool enabled.
VISUAL_COT = "visual_cot"
#: DeepEyes training data: one data source per converted file, all sharing this prefix.
DEEPEYES_PREFIX = "deepeyes_"


def deepeyes(stem: str) -> str:
    """``data_source`` of a row converted from the DeepEyes parquet file named ``<stem>.parquet``."""
    return f"{DEEPEYES_PREFIX}{stem}"


#: data_source -> scorer kind; a name ending in ``*`` is a prefix (the longest matching prefix wins).
SCORERS: dict[str, str] = {
    **dict.fromkeys(GROUNDING, GROUNDING_SCORER),
    HR_BENCH_4K: VQA_SCORER,
    HR_BENCH_8K: VQA_SCORER,
    VSTAR: VQA_SCORER,
    VISUAL_COT: VQA_SCORER,
    f"{DEEPEYES_PREFIX}*": VQA_SCORER,
}
