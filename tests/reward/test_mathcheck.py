"""math_verify through the worker process: works from threads (as veRL calls rewards) and survives hangs."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from verl_ext.reward.mathcheck import MAX_CHARS, MathChecker


def test_from_executor_threads_where_math_verify_alone_refuses_to_run():
    checker = MathChecker()
    try:
        with ThreadPoolExecutor(4) as pool:
            pairs = [(r"$\frac{1}{2}$", "0.5"), (r"$x^2+1$", "1+x^2"), ("$2$", "$3$"), (r"$\sqrt{4}$", "2")] * 3
            results = list(pool.map(lambda p: checker.equivalent(p[0], p[1], 5.0), pairs))
        assert results == [True, True, False, True] * 3
    finally:
        checker.close()


def test_a_hanging_verification_is_killed_and_the_worker_replaced():
    checker = MathChecker()
    try:
        assert checker.equivalent("$3$", "$3$", 5.0)
        first = checker._process.pid
        assert checker.equivalent("$3$", r"$9^{9^{9^{9}}}$", 1.0) is False  # sympy hangs in C big-int arithmetic
        assert checker._process is None
        assert checker.equivalent("$3$", "3", 5.0)
        assert checker._process.pid != first
    finally:
        checker.close()


def test_overlong_answers_are_not_sent():
    checker = MathChecker()
    assert checker.equivalent("1", "1" + " " * MAX_CHARS, 5.0) is False
    assert checker._process is None
