"""Math answers through ``math_verify``, in a worker process that can be killed.

Why a process: veRL's reward managers call ``compute_score`` from executor threads, where
``math_verify``'s signal-based timeouts cannot run (it raises unless they are disabled), and a hostile
answer such as ``9^{9^{9^{9}}}`` then hangs ``verify`` in C-level big-integer arithmetic that no
signal interrupts. The worker runs ``math_verify`` in its own main thread with its own timeouts;
the caller waits at most ``timeout`` seconds and kills and replaces a stuck worker.
"""

from __future__ import annotations

import multiprocessing
import threading
from functools import lru_cache
from multiprocessing.connection import Connection

#: Longer answers are not math answers; refusing them bounds the work a single row can cause.
MAX_CHARS = 1000


def _serve(conn: Connection) -> None:
    """Worker loop: receive (gold, prediction, timeout), answer whether they are equivalent."""
    import logging

    from math_verify import parse, verify

    logging.getLogger("math_verify").setLevel(logging.CRITICAL)

    def candidates(text: str, seconds: int) -> list:
        # Bare "x^2+1" parses as a Python expression ("^" is xor); read it as LaTeX math too.
        found = parse(text, parsing_timeout=seconds)
        if "$" not in text and "\\(" not in text and "\\[" not in text:
            found = found + parse(f"${text}$", parsing_timeout=seconds)
        return found

    while True:
        try:
            gold, pred, timeout = conn.recv()
        except EOFError:
            return
        seconds = max(1, int(timeout))
        try:
            ok = bool(verify(candidates(gold, seconds), candidates(pred, seconds), timeout_seconds=seconds))
        except Exception:  # math_verify on arbitrary text: any failure means "not shown equal"
            ok = False
        conn.send(ok)


class MathChecker:
    """A lazily started, restartable ``math_verify`` worker; calls are serialised by a lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: multiprocessing.process.BaseProcess | None = None
        self._conn: Connection | None = None

    def equivalent(self, gold: str, pred: str, timeout: float) -> bool:
        """True when ``math_verify`` shows ``pred`` equals ``gold`` within ``timeout`` seconds."""
        if len(gold) > MAX_CHARS or len(pred) > MAX_CHARS:
            return False
        with self._lock:
            conn = self._ensure_started()
            try:
                conn.send((gold, pred, timeout))
                if conn.poll(timeout + 1.0):
                    return bool(conn.recv())
            except (EOFError, OSError):
                pass
            self._stop()
            return False

    def close(self) -> None:
        with self._lock:
            self._stop()

    def _ensure_started(self) -> Connection:
        if self._process is None or not self._process.is_alive():
            self._stop()
            ctx = multiprocessing.get_context("spawn")
            parent, child = ctx.Pipe()
            self._process = ctx.Process(target=_serve, args=(child,), name="math-verify", daemon=True)
            self._process.start()
            child.close()
            self._conn = parent
        return self._conn

    def _stop(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.join()
        if self._conn is not None:
            self._conn.close()
        self._process, self._conn = None, None


_CHECKER = MathChecker()


@lru_cache(maxsize=8192)
def math_equivalent(gold: str, pred: str, timeout: float = 5.0) -> bool:
    """Cached ``math_verify`` equivalence (rollout groups repeat answers); False on timeout or error."""
    return _CHECKER.equivalent(gold, pred, timeout)
