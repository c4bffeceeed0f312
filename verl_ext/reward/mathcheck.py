"""Math answers through ``math_verify``, in a worker process that can be killed.

Why a process: veRL's reward managers call ``compute_score`` from executor threads, where
``math_verify``'s signal-based timeouts cannot run (it raises unless they are disabled), and a hostile
answer such as ``9^{9^{9^{9}}}`` then hangs ``verify`` in C-level big-integer arithmetic that no
signal interrupts. The worker (:mod:`verl_ext.reward.mathworker`) runs ``math_verify`` in its own main
thread with its own timeouts; the caller waits at most ``timeout + 1`` seconds and kills a stuck worker,
which the next call replaces.
"""

from __future__ import annotations

import json
import select
import subprocess
import sys
import threading
from functools import lru_cache
from pathlib import Path

from verl_ext.reward.base import warn_once

#: Longer answers are not math answers; refusing them bounds the work a single row can cause.
MAX_CHARS = 1000
#: Seconds a fresh worker may take to import math_verify and sympy (slow on a loaded machine).
STARTUP_TIMEOUT = 300.0
_WORKER = Path(__file__).with_name("mathworker.py")


class MathChecker:
    """A lazily started, restartable ``math_verify`` worker; calls are serialised by a lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: subprocess.Popen | None = None

    def equivalent(self, gold: str, pred: str, timeout: float) -> bool:
        """True when ``math_verify`` shows ``pred`` equals ``gold`` within about ``timeout`` seconds."""
        if len(gold) > MAX_CHARS or len(pred) > MAX_CHARS:
            return False
        with self._lock:
            try:
                process = self._ensure_started()
                process.stdin.write(json.dumps({"gold": gold, "pred": pred, "timeout": timeout}) + "\n")
                process.stdin.flush()
                reply = self._read_line(process, timeout + 1.0)
            except OSError as e:
                warn_once("math_verify worker failed: math answers score 0 until it runs", repr(e))
                reply = None
            if reply is None:
                self._stop()
                return False
            return reply.strip() == "1"

    def close(self) -> None:
        with self._lock:
            self._stop()

    def _ensure_started(self) -> subprocess.Popen:
        if self._process is not None and self._process.poll() is None:
            return self._process
        self._stop()
        # -I: isolated, so the worker's folder does not shadow modules and the package is not imported.
        self._process = subprocess.Popen(
            [sys.executable, "-I", str(_WORKER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            bufsize=1,
        )
        if self._read_line(self._process, STARTUP_TIMEOUT) != "ready\n":
            self._stop()
            raise OSError("math_verify worker did not start")
        return self._process

    @staticmethod
    def _read_line(process: subprocess.Popen, timeout: float) -> str | None:
        ready, _, _ = select.select([process.stdout], [], [], timeout)
        if not ready:
            return None
        line = process.stdout.readline()
        return line or None

    def _stop(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            for stream in (self._process.stdin, self._process.stdout):
                stream.close()
        self._process = None


_CHECKER = MathChecker()


@lru_cache(maxsize=8192)
def math_equivalent(gold: str, pred: str, timeout: float = 5.0) -> bool:
    """Cached ``math_verify`` equivalence (rollout groups repeat answers); False on timeout or error."""
    return _CHECKER.equivalent(gold, pred, timeout)
