"""math_verify through the worker pool: works from threads (as veRL calls rewards), survives hangs, screens towers."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from verl_ext.reward.mathcheck import MAX_CHARS, MathChecker

#: Not screened, and sympy spends longer than the timeout on it: the worker must be killed.
HANGS = r"$\binom{10^{100}}{10^{50}}$"


def test_from_executor_threads_where_math_verify_alone_refuses_to_run():
    checker = MathChecker(workers=2)
    try:
        with ThreadPoolExecutor(4) as pool:
            pairs = [(r"$\frac{1}{2}$", "0.5"), (r"$x^2+1$", "1+x^2"), ("$2$", "$3$"), (r"$\sqrt{4}$", "2")] * 3
            results = list(pool.map(lambda p: checker.equivalent(p[0], p[1], 5.0), pairs))
        assert results == [True, True, False, True] * 3
    finally:
        checker.close()


def test_hanging_verifications_are_killed_on_every_worker_and_the_workers_replaced():
    checker = MathChecker(workers=2)
    try:
        with ThreadPoolExecutor(2) as pool:
            assert all(pool.map(lambda _: checker.equivalent("$3$", "$3$", 5.0), range(2)))
            first = {w.process.pid for w in checker.workers if w.process is not None}
            assert not any(pool.map(lambda _: checker.equivalent("$3$", HANGS, 1.0), range(2)))
        assert all(w.process is None for w in checker.workers)  # both stuck workers were killed
        assert checker.equivalent("$3$", "3", 5.0)
        assert {w.process.pid for w in checker.workers if w.process is not None}.isdisjoint(first)
    finally:
        checker.close()


@pytest.mark.parametrize(
    "hostile",
    [r"9^{9^{9^{9}}}", "9^9^9", "9**9**9", r"10^{10000000}", r"(10^{100})!", "1000000!", "1" + " " * MAX_CHARS],
)
def test_obviously_costly_answers_are_refused_without_a_worker(hostile):
    checker = MathChecker(workers=1)
    assert checker.equivalent("3", hostile, 5.0) is False
    assert checker.equivalent(hostile, "3", 5.0) is False
    assert checker.workers[0].process is None


def test_the_screen_lets_ordinary_powers_and_factorials_through():
    checker = MathChecker(workers=1)
    try:
        assert checker.equivalent("$1024$", "2^{10}", 5.0)
        assert checker.equivalent("$120$", "$5!$", 5.0)
        assert checker.equivalent(r"$x^2+y^2$", "y^2 + x^2", 5.0)
    finally:
        checker.close()
