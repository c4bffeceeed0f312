"""The reward's output contract: the keys ``compute_score`` returns for every row, all floats.

Written by :mod:`verl_ext.reward`; read by the trainer hook (``evidence_scale`` for SRPO, ``acc`` and
``num_zooms`` for diagnostics and dumps, the ``judge_*`` keys for the ``judge/*`` step metrics), the
evaluation metrics and the test tooling. veRL requires the same keys for every row of a batch, so this
tuple is the whole contract, judge or not. Importing it costs nothing (no veRL).
"""

from __future__ import annotations

from enum import IntEnum

SCORE = "score"
ACC = "acc"
FORMAT = "format"
IOU = "iou"
EVIDENCE_SCALE = "evidence_scale"
NUM_ZOOMS = "num_zooms"
#: 1.0 when the row's answer was sent to the LLM judge (an open answer the rules did not accept), else 0.0.
JUDGE_CALLED = "judge_called"
#: 1.0 when the judge gave no verdict (timeout, HTTP error, unreadable reply): the row kept its rule score.
JUDGE_FAILED = "judge_failed"
#: 1.0 / 0.0: the judge's verdict equals the rules' ``acc``; JUDGE_NOT_APPLICABLE without a verdict.
JUDGE_AGREE = "judge_agree"
#: Seconds the row waited for the judge (0.0 when not called; about 0 when the verdict was cached).
JUDGE_LATENCY = "judge_latency_s"
#: Why the judge gave no verdict, a :class:`JudgeError` code (0.0 with a verdict or when not called).
JUDGE_ERROR = "judge_error"
#: Times the judge's circuit breaker opened while this row waited (summed over a step: the step's opens).
JUDGE_CIRCUIT_OPENS = "judge_circuit_opens"


class JudgeError(IntEnum):
    """``judge_error`` codes: why a row sent to the judge kept its rule score (docs/judge.md)."""

    NONE = 0
    #: No reply within ``timeout`` (every attempt), connection refused or reset, or HTTP 5xx: endpoint failures.
    TIMEOUT = 1
    CONNECTION = 2
    SERVER_ERROR = 3
    #: HTTP 4xx; HTTP 3xx (redirects are not followed).
    REFUSED = 4
    REDIRECT = 5
    #: A reply over ``max_reply_bytes``; not JSON or without ``choices[0].message.content``; not a verdict.
    REPLY_TOO_LARGE = 6
    UNREADABLE = 7
    NO_VERDICT = 8
    #: Not sent: the circuit breaker is open after repeated endpoint failures.
    CIRCUIT_OPEN = 9


#: Every returned dict has exactly these keys, all floats.
REWARD_KEYS = (
    SCORE,
    ACC,
    FORMAT,
    IOU,
    EVIDENCE_SCALE,
    NUM_ZOOMS,
    JUDGE_CALLED,
    JUDGE_FAILED,
    JUDGE_AGREE,
    JUDGE_LATENCY,
    JUDGE_ERROR,
    JUDGE_CIRCUIT_OPENS,
)

#: ``iou`` of a row that is not a grounding row: distinguishable from a missed box (0.0) in per-source metrics.
IOU_NOT_APPLICABLE = -1.0
#: ``judge_agree`` of a row the judge gave no verdict on.
JUDGE_NOT_APPLICABLE = -1.0
