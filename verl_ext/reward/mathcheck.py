"""Math answers through ``math_verify``, in a small pool of worker processes that can be killed.

Why processes: veRL's reward managers call ``compute_score`` from executor threads, where
``math_verify``'s signal-based timeouts cannot run (it raises unless they are disabled), and a hostile
answer such as ``9^{9^{9^{9}}}`` then hangs ``verify`` in C-level big-integer arithmetic that no
signal interrupts. Each worker (:mod:`verl_ext.reward.mathworker`) runs ``math_verify`` in its own main
thread with its own timeouts; the caller waits at most ``timeout + 1`` seconds and kills a stuck worker,
which its next call replaces.

Bounding a group's worst case: answers that are obviously too costly (exponent towers, exponents or
factorials of huge literals) are refused before any worker sees them, and :data:`WORKERS` workers
verify in parallel, so four hostile answers on four threads cost one timeout, not four.

Why not a process-pool library (``pebble.ProcessPool`` with per-task timeouts): its workers run a
pickled function, so they start by importing this package (the reward, veRL, torch) and, under
``spawn``, re-run the parent's main module (a Ray worker's); ``fork`` from a threaded Ray actor is
unsafe. Here a worker is ``python -I mathworker.py``: it imports only ``math_verify``.
"""

from __future__ import annotations

import json
import queue
import re
import select
import subprocess
import sys
import threading
from functools import lru_cache
from pathlib import Path

from verl_ext.reward.base import warn_once

#: Longer answers are not math answers; refusing them bounds the work a single row can cause.
MAX_CHARS = 1000
#: Verifications that may run at once (per reward process); each worker holds sympy (about 100 MB).
WORKERS = 4
#: Seconds a fresh worker may take to import math_verify and sympy (slow on a loaded machine).
STARTUP_TIMEOUT = 300.0
_WORKER = Path(__file__).with_name("mathworker.py")

_POWER = r"(?:\^|\*\*)"
#: Exponent towers (``9^{9^{9}}``, ``a^b^c``), exponents of five digits or more, factorials of huge
#: literals or of anything holding a power: sympy evaluates these to numbers that do not fit in memory.
_TOO_COSTLY = re.compile(
    rf"{_POWER}\s*+[({{]?+[\w.\s]*+{_POWER}|{_POWER}\s*+[({{]?+\s*+\d{{5}}|\d{{6}}\s*+!|\\uparrow|\\mathrm{{tetration}}"
)
_GROUP_FACTORIAL = re.compile(r"[)}]\s*+!")


def too_costly(text: str) -> bool:
    """True for text whose verification could exhaust time or memory (refused, so scored as not equal)."""
    if len(text) > MAX_CHARS or _TOO_COSTLY.search(text):
        return True
    return "^" in text and _GROUP_FACTORIAL.search(text) is not None


class _Worker:
    """One ``math_verify`` process, started on first use and replaced after a timeout or crash."""

    def __init__(self) -> None:
        self.process: subprocess.Popen | None = None

    def equivalent(self, gold: str, pred: str, timeout: float) -> bool:
        try:
            process = self._ensure_started()
            process.stdin.write(json.dumps({"gold": gold, "pred": pred, "timeout": timeout}) + "\n")
            process.stdin.flush()
            reply = self._read_line(process, timeout + 1.0)
        except OSError as e:
            warn_once("math_verify worker failed: math answers score 0 until it runs", repr(e))
            reply = None
        if reply is None:
            self.stop()
            return False
        return reply.strip() == "1"

    def _ensure_started(self) -> subprocess.Popen:
        if self.process is not None and self.process.poll() is None:
            return self.process
        self.stop()
        # -I: isolated, so the worker's folder does not shadow modules and the package is not imported.
        self.process = subprocess.Popen(
            [sys.executable, "-I", str(_WORKER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            bufsize=1,
        )
        if self._read_line(self.process, STARTUP_TIMEOUT) != "ready\n":
            self.stop()
            raise OSError("math_verify worker did not start")
        return self.process

    @staticmethod
    def _read_line(process: subprocess.Popen, timeout: float) -> str | None:
        ready, _, _ = select.select([process.stdout], [], [], timeout)
        if not ready:
            return None
        line = process.stdout.readline()
        return line or None

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            for stream in (self.process.stdin, self.process.stdout):
                stream.close()
        self.process = None


class MathChecker:
    """``workers`` lazily started, restartable ``math_verify`` processes; a call takes a free one."""

    def __init__(self, workers: int = WORKERS) -> None:
        self.workers = [_Worker() for _ in range(workers)]
        self._idle: queue.LifoQueue[_Worker] = queue.LifoQueue()
        for worker in self.workers:
            self._idle.put(worker)
        self._closing = threading.Lock()

    def equivalent(self, gold: str, pred: str, timeout: float) -> bool:
        """True when ``math_verify`` shows ``pred`` equals ``gold`` within about ``timeout`` seconds."""
        if too_costly(gold) or too_costly(pred):
            return False
        worker = self._idle.get()  # LIFO: the most recently used worker is the one already started
        try:
            return worker.equivalent(gold, pred, timeout)
        finally:
            self._idle.put(worker)

    def close(self) -> None:
        """Stop every idle worker (a busy one is stopped by its caller's timeout or left to finish)."""
        with self._closing:
            idle = []
            while not self._idle.empty():
                idle.append(self._idle.get())
            for worker in idle:
                worker.stop()
                self._idle.put(worker)


_CHECKER = MathChecker()


@lru_cache(maxsize=8192)
def math_equivalent(gold: str, pred: str, timeout: float = 5.0) -> bool:
    """Cached ``math_verify`` equivalence (rollout groups repeat answers); False on timeout or error."""
    return _CHECKER.equivalent(gold, pred, timeout)
