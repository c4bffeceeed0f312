"""Zoom records and the evidence scale SRPO bins on.

The region-zoom tool appends one record per call (valid or not) to the trajectory's
``agent_data.extra_fields[ZOOM_RECORDS_KEY]``; veRL hands ``extra_fields`` to ``compute_score`` as
part of ``extra_info``; the reward turns the records into ``evidence_scale``, which the trainer hook
routes to SRPO. Records are plain dicts so they serialise through Ray and TransferQueue.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal, TypedDict

ZOOM_RECORDS_KEY = "zoom_records"
#: A trajectory that never zoomed (or only with invalid boxes) takes the whole image as its evidence.
DEFAULT_SCALE_WHEN_MISSING = 1.0


class ZoomRecord(TypedDict):
    """One zoom call. Boxes are ``[x1, y1, x2, y2]``; ``None`` where the arguments held no usable box."""

    bbox_model: list[float] | None  # as the model wrote it, in the resized frame it sees
    bbox_original: list[float] | None  # mapped to original pixels, clamped, min side enforced
    relative_area: float | None  # area(bbox_original) / area(image), in [0, 1]
    valid: bool
    reason: str  # "" when valid, else why the call was rejected


def evidence_scale(
    records: Any,
    mode: Literal["first", "last"] = "first",
    missing: float = DEFAULT_SCALE_WHEN_MISSING,
) -> float:
    """Relative area of the first (or last) valid zoom in ``records``; ``missing`` when there is none.

    Tolerates anything in place of ``records`` (model outputs are hostile, extra_info may be absent
    or mangled): only entries that are mappings with ``valid`` true and a finite area in [0, 1] count.
    """
    if mode not in ("first", "last"):
        raise ValueError(f"evidence scale mode must be 'first' or 'last', got {mode!r}")
    if isinstance(records, (str, bytes)) or not isinstance(records, Sequence):
        # numpy object arrays and other iterables arrive through Ray; accept any list-like.
        try:
            records = list(records)
        except TypeError:
            return missing
    valid = [a for a in (_valid_area(r) for r in records) if a is not None]
    if not valid:
        return missing
    return valid[0] if mode == "first" else valid[-1]


def _valid_area(record: Any) -> float | None:
    if not hasattr(record, "get") or not record.get("valid"):
        return None
    value = record.get("relative_area")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) and 0.0 <= value <= 1.0 else None
