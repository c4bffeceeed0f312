"""The reward's output contract: the keys ``compute_score`` returns for every row, all floats.

Written by :mod:`verl_ext.reward`; read by the trainer hook (``evidence_scale`` for SRPO, ``acc`` and
``num_zooms`` for diagnostics and dumps), the evaluation metrics and the test tooling. veRL requires the same
keys for every row of a batch, so this tuple is the whole contract. Importing it costs nothing (no veRL).
"""

from __future__ import annotations

SCORE = "score"
ACC = "acc"
FORMAT = "format"
IOU = "iou"
EVIDENCE_SCALE = "evidence_scale"
NUM_ZOOMS = "num_zooms"

#: Every returned dict has exactly these keys, all floats.
REWARD_KEYS = (SCORE, ACC, FORMAT, IOU, EVIDENCE_SCALE, NUM_ZOOMS)

#: ``iou`` of a row that is not a grounding row: distinguishable from a missed box (0.0) in per-source metrics.
IOU_NOT_APPLICABLE = -1.0
