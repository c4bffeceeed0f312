"""Worst case of one ``compute_score`` call on 100 KB adversarial responses, next to the old patterns.

    python benchmarks/bench_reward_adversarial.py [--size 100000] [--old-full]

Each hostile kind is a response a policy at temperature 1 can write. "ours" is the slowest of
``compute_score`` over five data sources (multiple choice, open, number, math, grounding) on the full
input. "old" is the pattern the reward ran before (rebuilt here) on the same kind of input: it is
quadratic, so by default it runs at 10 KB and 20 KB and the 100 KB figure is the 20 KB time x
(size/20 KB)^2 (``--old-full`` times it at full size: minutes). The target is under 50 ms per call.

The math part: four hostile math answers from four threads (as veRL's executor calls the reward),
against the old single worker behind a lock.
"""

from __future__ import annotations

import argparse
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from verl_ext.reward import compute_score
from verl_ext.reward.mathcheck import MathChecker, _Worker

_OLD_NUM = r"\s*([-+]?(?:\d+(?:\.\d*)?|\.\d+))\s*"
OLD = {
    "tool turn": re.compile(
        r"\buser\s*(?:<tool_response>.*?</tool_response>\s*)+(?:assistant\b[ \t]*\n?)?", re.DOTALL
    ).split,
    "answer": re.compile(r"<answer>(.*?)</answer>", re.DOTALL).findall,
    "letter": re.compile(
        r"(?:(?:the\s+)?(?:correct\s+)?(?:answer|option|choice)\s*(?:is\s*)?:?\s*)?\(?([a-z])\)?[.:)]?", re.I
    ).fullmatch,
    "corner pairs": re.compile(rf"\({_OLD_NUM},{_OLD_NUM}\)\s*,?\s*\({_OLD_NUM},{_OLD_NUM}\)").search,
}
#: kind -> (response of about ``size`` characters, the old pattern it stalled, that pattern's input)
KINDS: dict[str, tuple[Callable[[int], str], str, Callable[[int], str]]] = {
    "unclosed <answer> x N": (lambda n: "<answer>" * (n // 8), "answer", lambda n: "<answer>" * (n // 8)),
    "user<tool_response> x N": (
        lambda n: "user<tool_response>" * (n // 19),
        "tool turn",
        lambda n: "user<tool_response>" * (n // 19),
    ),
    "a word, then N spaces": (
        lambda n: "<think>x</think><answer>answer" + " " * n + "xy</answer>",
        "letter",
        lambda n: "answer" + " " * n + "xy",
    ),
    "corner pair, then N spaces": (
        lambda n: "<answer>(1,2)" + " " * n + "x</answer>",
        "corner pairs",
        lambda n: "(1,2)" + " " * n + "x",
    ),
}
ROWS = [
    ("vstar", "B", {"options": ["red", "blue"]}),
    ("visual_cot", "the red bus", {}),
    ("visual_cot", "3", {}),
    ("visual_cot", r"$\frac{1}{2}$", {}),
    ("refcoco", [0, 0, 10, 10], {"image_width": 640, "image_height": 480, "resized_width": 640, "resized_height": 480}),
]
HOSTILE_MATH = [r"9^{9^{9^{9}}}", r"10^{10000000}", r"(10^{100})!", r"9**9**9"]
UNSCREENED_MATH = r"\binom{10^{100}}{10^{50}}"


def worst_call(text: str, repeats: int = 3) -> float:
    """Seconds of the slowest compute_score call over the rows (best of ``repeats`` per row)."""
    worst = 0.0
    for source, truth, info in ROWS:
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            compute_score(source, text, truth, info)
            best = min(best, time.perf_counter() - start)
        worst = max(worst, best)
    return worst


def timed(fn: Callable[[str], object], text: str) -> float:
    start = time.perf_counter()
    fn(text)
    return time.perf_counter() - start


def old_seconds(kind: str, make: Callable[[int], str], size: int, full: bool) -> tuple[float, str]:
    if full:
        return timed(OLD[kind], make(size)), "measured"
    t10, t20 = timed(OLD[kind], make(10_000)), timed(OLD[kind], make(20_000))
    return t20 * (size / 20_000) ** 2, f"10 KB {t10 * 1e3:.0f} ms, 20 KB {t20 * 1e3:.0f} ms, x(size/20KB)^2"


def math_group(answers: list[str], check: Callable[[str], bool]) -> float:
    """Seconds for four threads to verify ``answers`` at once, as veRL's executor would."""
    start = time.perf_counter()
    with ThreadPoolExecutor(len(answers)) as pool:
        list(pool.map(check, answers))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=100_000, help="characters of each adversarial response")
    parser.add_argument("--old-full", action="store_true", help="time the old patterns at full size (minutes)")
    parser.add_argument("--math-timeout", type=float, default=2.0)
    args = parser.parse_args()
    compute_score("vstar", "<answer>B</answer>", "B")  # imports outside the timing

    print(
        f"| {'hostile kind (' + str(args.size // 1000) + ' KB)':<30} | {'ours, worst call':>16} | {'old':>10} | "
        f"{'ratio':>8} | old figure |"
    )
    print(f"|{'-' * 32}|{'-' * 18}|{'-' * 12}|{'-' * 10}|{'-' * 12}|")
    for name, (response, kind, old_input) in KINDS.items():
        ours = worst_call(response(args.size))
        old, how = old_seconds(kind, old_input, args.size, args.old_full)
        print(f"| {name:<30} | {ours * 1e3:>13.2f} ms | {old:>8.2f} s | {old / ours:>7,.0f}x | {how} |")

    t = args.math_timeout
    old_worker, lock = _Worker(), threading.Lock()
    old_worker.equivalent("1", "1", t)  # started outside the timing

    def old_check(answer: str) -> bool:
        with lock:
            return old_worker.equivalent("$3$", f"${answer}$", t)

    pool = MathChecker()
    list(ThreadPoolExecutor(4).map(lambda _: pool.equivalent("$1$", "$1$", t), range(8)))  # start workers

    print(f"\nmath, four answers from four threads, timeout {t} s (old: one worker behind a lock, no screen)")
    print(f"| {'answers':<36} | {'ours':>8} | {'old':>8} |")
    print(f"|{'-' * 38}|{'-' * 10}|{'-' * 10}|")
    groups = [("screened (towers, huge literals)", HOSTILE_MATH), ("unscreened hang x4", [UNSCREENED_MATH] * 4)]
    for label, answers in groups:
        ours = math_group(answers, lambda a: pool.equivalent("$3$", f"${a}$", t))
        old = math_group(answers, old_check)
        print(f"| {label:<36} | {ours:>6.2f} s | {old:>6.2f} s |")
    pool.close()
    old_worker.stop()


if __name__ == "__main__":
    main()
