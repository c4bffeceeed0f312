"""Evaluation metrics: pure functions over trajectory records (docs/eval.md).

A record is one question's one sample (see :mod:`verl_ext.eval.records`); the functions read only these keys:
``data_source``, ``key`` (the question), ``split``, ``category``, ``cycle_category``, ``ground_truth``,
``failed`` (reason or None), ``acc``, ``iou``, ``evidence_scale``, ``num_zooms``, ``num_invalid_zooms``.
A failed sample counts in every denominator and is never correct (acc 0, IoU 0).

- HR-Bench 4K/8K, VLMEvalKit's protocol: per ``cycle_category`` the accuracy over all its rows and per
  ``category`` (``single`` = FSP, ``cross`` = FCP), then the mean over cycles (a category averages over the
  cycles it appears in); ``acc_pooled`` is the plain accuracy over all rows.
- Grounding (RefCOCO family), per expression: Acc@0.5 (IoU >= 0.5), Acc@0.75 and mean IoU, per split.
- Every other source: accuracy, per ``category`` when rows carry one.
- Multiple choice: the share of questions whose correct letter is A, B, ... (shows whether options were shuffled).
- Zoom statistics for every source: zooms per question, share of invalid zoom calls, evidence-scale histogram
  over the SRPO bins and accuracy per bin.

With ``n`` samples per question, ``acc`` is mean@n (each question's mean over its samples) and ``pass@n`` the
share of questions with a correct sample. The trainer's in-training validation calls :func:`validation_metrics`
so its ``val-core/...`` numbers are these.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from verl_ext.data_sources import GROUNDING, HR_BENCH_4K, HR_BENCH_8K
from verl_ext.reward.grounding import ACC_IOU_THRESHOLD
from verl_ext.trainer.diagnostics import bin_label

HR_BENCH = (HR_BENCH_4K, HR_BENCH_8K)
#: HR-Bench's category values and the names the paper's table uses for them.
HR_CATEGORIES = {"single": "FSP", "cross": "FCP"}
ACC_STRICT_THRESHOLD = 0.75
Record = Mapping[str, Any]


def summarize(
    records: Iterable[Record], num_bins: int = 3, bin_edges: Sequence[float] | None = None
) -> dict[str, float]:
    """Flat ``<data_source>/<metric>`` and ``<data_source>/<group>/<metric>`` metrics of every source present."""
    by_source: dict[str, list[Record]] = defaultdict(list)
    for record in records:
        by_source[str(record["data_source"])].append(record)
    out: dict[str, float] = {}
    for source in sorted(by_source):
        for name, value in source_metrics(source, by_source[source], num_bins, bin_edges).items():
            out[f"{source}/{name}"] = value
    return out


def source_metrics(
    source: str, records: list[Record], num_bins: int = 3, bin_edges: Sequence[float] | None = None
) -> dict[str, float]:
    """The metrics of one data source (names without the source prefix)."""
    questions = _questions(records)
    n_samples = max((len(q) for q in questions.values()), default=0)
    out: dict[str, float] = {
        "n": float(len(questions)),
        "samples": float(len(records)),
        "failed": float(sum(1 for r in records if r.get("failed"))),
    }
    if source in HR_BENCH:
        out.update(_hr_bench(questions, n_samples))
    elif source in GROUNDING:
        out.update(_grounding(questions))
    else:
        out["acc"] = _mean(_acc_mean(q) for q in questions.values())
        if n_samples > 1:
            out[f"pass@{n_samples}"] = _mean(_acc_pass(q) for q in questions.values())
        for category, group in _group(questions, "category").items():
            out[f"{category}/acc"] = _mean(_acc_mean(q) for q in group)
            out[f"{category}/n"] = float(len(group))
    out.update(answer_positions(questions))
    out.update(zoom_metrics(records, num_bins, bin_edges))
    return out


def hr_bench_cycle_accuracy(rows: Sequence[tuple[str | None, str | None, float]]) -> dict[str, float]:
    """VLMEvalKit's HR-Bench score of ``(cycle_category, category, hit)`` rows: cycle-averaged overall and per
    category, and the per-cycle values (``cycle:<name>``)."""
    by_cycle: dict[str, list[tuple[str | None, float]]] = defaultdict(list)
    for cycle, category, hit in rows:  # rows without a cycle (in-training data lacking it) form one cycle
        by_cycle[str(cycle) if cycle is not None else "none"].append((category, hit))
    overall, per_category, out = [], defaultdict(list), {}
    for cycle in sorted(by_cycle):
        hits = by_cycle[cycle]
        value = _mean(h for _, h in hits)
        overall.append(value)
        out[f"cycle:{cycle}"] = value
        for category in sorted({c for c, _ in hits if c is not None}):
            per_category[category].append(_mean(h for c, h in hits if c == category))
    out["all"] = _mean(overall)
    for category, values in per_category.items():
        out[category] = _mean(values)
    return out


def _hr_bench(questions: dict[str, list[Record]], n_samples: int) -> dict[str, float]:
    out: dict[str, float] = {}
    reducers = {"acc": _acc_mean} | ({f"pass@{n_samples}": _acc_pass} if n_samples > 1 else {})
    for metric, reduce in reducers.items():
        rows = [(_field(q, "cycle_category"), _field(q, "category"), reduce(q)) for q in questions.values()]
        scores = hr_bench_cycle_accuracy(rows)
        out[metric] = scores["all"]
        for category, value in scores.items():
            if category == "all" or (category.startswith("cycle:") and metric != "acc"):
                continue
            out[f"{HR_CATEGORIES.get(category, category)}/{metric}"] = value
        if metric == "acc":
            out["acc_pooled"] = _mean(hit for *_, hit in rows)
            for category in HR_CATEGORIES:
                hits = [hit for _, c, hit in rows if c == category]
                if hits:
                    out[f"{HR_CATEGORIES[category]}/acc_pooled"] = _mean(hits)
    return out


def _grounding(questions: dict[str, list[Record]]) -> dict[str, float]:
    """Per expression (each row one expression); every sample of a row counts (mean@n)."""
    out = _box_scores(list(questions.values()))
    for split, group in _group(questions, "split").items():
        for name, value in _box_scores(group).items():
            out[f"{split}/{name}"] = value
    return out


def _box_scores(questions: list[list[Record]]) -> dict[str, float]:
    ious = [[_iou(r) for r in q] for q in questions]
    return {
        "acc": _mean(_mean(float(v >= ACC_IOU_THRESHOLD) for v in q) for q in ious),
        f"acc@{ACC_IOU_THRESHOLD}": _mean(_mean(float(v >= ACC_IOU_THRESHOLD) for v in q) for q in ious),
        f"acc@{ACC_STRICT_THRESHOLD}": _mean(_mean(float(v >= ACC_STRICT_THRESHOLD) for v in q) for q in ious),
        "miou": _mean(_mean(q) for q in ious),
        "n": float(len(questions)),
    }


def answer_positions(questions: dict[str, list[Record]]) -> dict[str, float]:
    """Share of questions whose ground truth is each letter (multiple-choice sources only)."""
    letters = [_field(q, "ground_truth") for q in questions.values()]
    if not letters or not all(isinstance(t, str) and len(t) == 1 and t.isupper() for t in letters):
        return {}
    counts = Counter(letters)
    return {f"answer_position/{letter}": counts[letter] / len(letters) for letter in sorted(counts)}


def zoom_metrics(
    records: list[Record], num_bins: int = 3, bin_edges: Sequence[float] | None = None
) -> dict[str, float]:
    """Zooms per question, invalid-call share, evidence-scale histogram over the SRPO bins and accuracy per bin.

    Failed samples have no trajectory and are left out here (they are counted under ``failed``).
    """
    done = [r for r in records if not r.get("failed")]
    calls = sum(_number(r.get("num_zooms")) for r in done)
    invalid = sum(_number(r.get("num_invalid_zooms")) for r in done)
    out = {
        "zooms_per_question": calls / len(done) if done else 0.0,
        "invalid_zoom_share": invalid / calls if calls else 0.0,
    }
    scaled = [(_number(r.get("evidence_scale"), math.nan), _number(r.get("acc"))) for r in done]
    scaled = [(s, acc) for s, acc in scaled if math.isfinite(s)]
    bins: dict[int, list[float]] = defaultdict(list)
    for k, (_, acc) in zip(scale_bins([s for s, _ in scaled], num_bins, bin_edges), scaled, strict=True):
        bins[k].append(acc)
    total = sum(len(v) for v in bins.values())
    for k in range(num_bins):
        label = bin_label(k, num_bins, tuple(bin_edges) if bin_edges is not None else None)
        out[f"scale/{label}/share"] = len(bins[k]) / total if total else 0.0
        if bins[k]:
            out[f"scale/{label}/acc"] = _mean(bins[k])
    return out


def scale_bins(scales: Sequence[float], num_bins: int, bin_edges: Sequence[float] | None = None) -> list[int]:
    """The SRPO bin of each evidence scale (:func:`verl_ext.algorithms.srpo.scale_bins`, the estimator's own)."""
    from verl_ext.algorithms import srpo

    return srpo.scale_bins(list(scales), num_bins, bin_edges).tolist() if scales else []


def validation_metrics(records: Iterable[Record], num_bins: int = 3, bin_edges: Sequence[float] | None = None):
    """The harness's metrics for the trainer's validation step: headline accuracies under ``val-core/``
    (``<source>/acc``, and ``<source>/<split>/acc@0.5`` for grounding), everything else under ``val-aux/``."""
    out: dict[str, float] = {}
    for name, value in summarize(records, num_bins, bin_edges).items():
        parts = name.split("/")
        core = parts[-1] == "acc" and len(parts) == 2
        core |= parts[0] in GROUNDING and len(parts) == 3 and parts[-1] == f"acc@{ACC_IOU_THRESHOLD}"
        out[f"{'val-core' if core else 'val-aux'}/{name}"] = value
    return out


def records_from_validation(
    data_sources: Sequence[Any],
    uids: Sequence[Any],
    reward_extra_infos: Mapping[str, Sequence[Any]],
    rows: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Records from what veRL's validation step collects: per sample its data source, prompt uid (the question; the
    ``n`` samples share it) and the reward's extra info columns; ``rows`` (:func:`rows_by_uid`) adds each question's
    split, category, cycle and ground truth. Without them HR-Bench rows form one cycle and groups are left out."""
    records = []
    for i, (source, uid) in enumerate(zip(data_sources, uids, strict=True)):
        row = (rows or {}).get(str(uid)) or {}
        info = {k: v[i] for k, v in reward_extra_infos.items() if i < len(v)}
        records.append(
            {
                "data_source": str(source),
                "key": str(uid),
                **{k: row.get(k) for k in ("split", "category", "cycle_category", "ground_truth")},
                "failed": None,
                **{k: info.get(k) for k in ("acc", "iou", "evidence_scale", "num_zooms")},
                "num_invalid_zooms": info.get("num_invalid_zooms", 0),
            }
        )
    return records


def rows_by_uid(batches: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """``uid -> {split, category, cycle_category, ground_truth}`` from validation batches (veRL's ``_validate`` writes
    a ``uid`` column into each batch dict it takes from the dataloader, next to ``extra_info`` and ``reward_model``)."""
    out: dict[str, dict[str, Any]] = {}
    for batch in batches:
        uids = batch.get("uid")
        if uids is None:
            continue
        extras = batch.get("extra_info")
        rewards = batch.get("reward_model")
        for i, uid in enumerate(uids):
            extra = (extras[i] if extras is not None else None) or {}
            reward = (rewards[i] if rewards is not None else None) or {}
            out[str(uid)] = {
                **{k: extra.get(k) for k in ("split", "category", "cycle_category")},
                "ground_truth": reward.get("ground_truth"),
            }
    return out


def _questions(records: list[Record]) -> dict[str, list[Record]]:
    grouped: dict[str, list[Record]] = defaultdict(list)
    for r in records:
        grouped[str(r.get("key"))].append(r)
    return grouped


def _group(questions: dict[str, list[Record]], field: str) -> dict[str, list[list[Record]]]:
    groups: dict[str, list[list[Record]]] = defaultdict(list)
    for q in questions.values():
        value = _field(q, field)
        if value not in (None, ""):
            groups[str(value)].append(q)
    return dict(sorted(groups.items()))


def _field(question: list[Record], field: str) -> Any:
    return question[0].get(field)


def _acc(record: Record) -> float:
    return 0.0 if record.get("failed") else _number(record.get("acc"))


def _iou(record: Record) -> float:
    return 0.0 if record.get("failed") else max(0.0, _number(record.get("iou")))


def _acc_mean(question: list[Record]) -> float:
    return _mean(_acc(r) for r in question)


def _acc_pass(question: list[Record]) -> float:
    return max((_acc(r) for r in question), default=0.0)


def _number(value: Any, default: float = 0.0) -> float:
    if isinstance(value, bool):
        return float(value)
    try:
        value = float(value)
    except (TypeError, ValueError):
        return default
    return value if math.isfinite(value) else default


def _mean(values: Iterable[float]) -> float:
    values = list(values)
    return sum(values) / len(values) if values else 0.0
