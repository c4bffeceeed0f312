"""Scores per second of each reward scorer, next to the naive way (or veRL's own) in the same run.

    python benchmarks/bench_reward.py [--seconds 1.0]

Inputs are realistic responses (multi-turn with tool responses, every box shape, sloppy answers). A
baseline is what one would write first, or what veRL ships; "ratio" is ours / baseline in scores per
second (above 1: ours is faster). Baselines are not as robust as ours: the comparison is the price of
that robustness, or what the design buys (cached and isolated math, a shared ROUGE scorer).
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections.abc import Callable, Sequence
from itertools import cycle

from math_verify import parse, verify
from rouge_score import rouge_scorer
from verl.utils.reward_score import default_compute_score

from verl_ext.reward import compute_score
from verl_ext.reward.base import RewardOptions
from verl_ext.reward.format import format_score
from verl_ext.reward.grounding import score_grounding
from verl_ext.reward.mathcheck import MathChecker, math_equivalent
from verl_ext.reward.text import assistant_turns
from verl_ext.reward.vqa import score_multiple_choice, score_number, score_open, score_yes_no

OPTIONS = RewardOptions()
TOOL = "\nuser\n<tool_response>\nZoomed in on the region.\n</tool_response>\nassistant\n"
ZOOM = "<think>The sign is small; zoom in on it.</think>\n<box>[120, 40, 260, 180]</box>"
CALL = '{"name": "image_zoom_in_tool", "arguments": {"bbox_2d": [1, 2, 30, 40]}}'
HERMES = f"<think>Zoom.</think>\n<tool_call>\n{CALL}\n</tool_call>"
RESPONSES = [
    ZOOM + TOOL + "<think>The crop shows a blue sign.</think>\n<answer>B</answer>",
    HERMES + TOOL + ZOOM + TOOL + "<think>Blue.</think> <answer>(B) blue</answer>",
    "<think>It is blue.</think><answer>B</answer>",
    "The answer is B.",
]
MC = [("B", "B", ["red", "blue"]), ("(B)", "B", ["red", "blue"]), ("blue", "B", ["red", "blue"]), ("C", "B", None)]
YES_NO = [("Yes", "yes"), ("No, it is not.", "no"), ("yes", "no")]
NUMBERS = [("3", "3"), ("three", "3"), ("There are 1,024.", "1024"), ("4", "3")]
OPEN = [("a red double-decker bus", "red bus"), ("The Eiffel Tower", "eiffel tower"), ("a cat", "a dog on a mat")]
MATH = [(r"$\frac{1}{2}$", "0.5"), (r"$x^2+1$", "1+x^2"), (r"$\sqrt{2}$", "1.5"), ("$12$", "12")]
INFO = {"image_width": 1280, "image_height": 960, "resized_width": 640, "resized_height": 480}
TRUTH = [200.0, 100.0, 600.0, 500.0]
BOXES = [
    '{"bbox_2d": [100, 50, 300, 250], "label": "man"}',
    '```json\n[{"bbox_2d": [100, 50, 300, 250], "label": "man"}]\n```',
    "[100, 50, 200, 250]",
    "(100,50),(300,250)",
]
NAIVE_FORMAT = re.compile(r"<think>.*</think>\s*<answer>.*</answer>", re.DOTALL)
NAIVE_ROUGE_KEYS = ["rouge1", "rouge2", "rougeL"]


def rate(fn: Callable[[object], object], inputs: Sequence[object], seconds: float) -> float:
    """Calls per second of ``fn`` over ``inputs`` in a loop of about ``seconds`` (best of 3)."""
    best = 0.0
    for _ in range(3):
        items, n, start = cycle(inputs), 0, time.perf_counter()
        deadline = start + seconds / 3
        while True:
            for _ in range(16):
                fn(next(items))
            n += 16
            now = time.perf_counter()
            if now >= deadline:
                break
        best = max(best, n / (now - start))
    return best


def naive_box_iou(answer: str) -> float:
    """Parse JSON and read bbox_2d (fails on the other shapes Qwen writes), no frame mapping."""
    try:
        box = json.loads(answer)["bbox_2d"]
    except (ValueError, KeyError, TypeError):
        return 0.0
    ix = max(0.0, min(box[2], TRUTH[2]) - max(box[0], TRUTH[0]))
    iy = max(0.0, min(box[3], TRUTH[3]) - max(box[1], TRUTH[1]))
    inter = ix * iy
    union = (box[2] - box[0]) * (box[3] - box[1]) + (TRUTH[2] - TRUTH[0]) * (TRUTH[3] - TRUTH[1]) - inter
    return inter / union if union > 0 else 0.0


def unseen(check: Callable[[str, str], bool]) -> Callable[[tuple[str, str]], bool]:
    """``check`` on a never-seen pair each call (a counter makes the gold unique), so no cache can help."""
    counter = iter(range(10**9))

    def call(pair: tuple[str, str]) -> bool:
        k = next(counter)
        return check(f"{pair[0]}+{k}-{k}", pair[1])

    return call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="time per measurement (split in 3 runs)")
    s = parser.parse_args().seconds
    checker = MathChecker()
    checker.equivalent("1", "1", 5.0)  # start the worker outside the timing
    math_equivalent("1", "1")

    rows: list[tuple[str, float, str, float | None]] = [
        (
            "format (multi-turn)",
            rate(lambda r: format_score(assistant_turns(r)), RESPONSES, s),
            "one fullmatch, single turn (EasyR1)",
            rate(lambda r: NAIVE_FORMAT.fullmatch(r) is not None, RESPONSES, s),
        ),
        (
            "multiple choice",
            rate(lambda x: score_multiple_choice(*x), MC, s),
            "answer.strip() == truth",
            rate(lambda x: x[0].strip() == x[1], MC, s),
        ),
        ("yes/no", rate(lambda x: score_yes_no(*x), YES_NO, s), "-", None),
        ("number", rate(lambda x: score_number(*x), NUMBERS, s), "-", None),
        (
            "open (exact, else ROUGE-1/2/L)",
            rate(lambda x: score_open(*x), OPEN, s),
            "new RougeScorer per call",
            rate(lambda x: rouge_scorer.RougeScorer(NAIVE_ROUGE_KEYS).score(x[1], x[0]), OPEN, s),
        ),
        (
            "math, worker, unseen pairs",
            rate(unseen(lambda g, p: checker.equivalent(g, p, 5.0)), MATH, s),
            "math_verify in-process (main thread only)",
            rate(unseen(lambda g, p: verify(parse(g), parse(p))), MATH, s),
        ),
        (
            "math, cached (rollout group repeats)",
            rate(lambda x: math_equivalent(*x), MATH, s),
            "math_verify in-process, same pairs",
            rate(lambda x: verify(parse(x[0]), parse(x[1])), MATH, s),
        ),
        (
            "grounding (4 shapes, frame, IoU)",
            rate(lambda a: score_grounding(a, TRUTH, INFO, OPTIONS), BOXES, s),
            "json.loads + bbox_2d, no frame",
            rate(naive_box_iou, BOXES, s),
        ),
        (
            "compute_score, vstar row",
            rate(lambda r: compute_score("vstar", r, "B", {"options": ["red", "blue"]}), RESPONSES, s),
            "veRL default_compute_score geometry3k",
            rate(lambda r: default_compute_score("hiyouga/geometry3k", r, "B"), RESPONSES, s),
        ),
        (
            "compute_score, refcoco row",
            rate(lambda a: compute_score("refcoco", f"<think>x</think><answer>{a}</answer>", TRUTH, INFO), BOXES, s),
            "veRL default_compute_score geometry3k",
            None,
        ),
    ]
    checker.close()
    # Rows that share a baseline with the row above reuse its figure.
    previous: float | None = None
    print(f"| {'scorer':<38} | {'ours /s':>10} | {'baseline':<42} | {'baseline /s':>11} | {'ratio':>9} |")
    print(f"|{'-' * 40}|{'-' * 12}|{'-' * 44}|{'-' * 13}|{'-' * 11}|")
    for name, ours, base_name, base in rows:
        base = previous if base is None and base_name != "-" else base
        previous = base
        base_txt = f"{base:>11,.0f}" if base else f"{'-':>11}"
        ratio = f"{ours / base:>9.2f}" if base else f"{'-':>9}"
        print(f"| {name:<38} | {ours:>10,.0f} | {base_name:<42} | {base_txt} | {ratio} |")


if __name__ == "__main__":
    main()
