"""The ``math_verify`` worker process, run as a script by :mod:`verl_ext.reward.mathcheck`.

Reads JSON lines ``{"gold": ..., "pred": ..., "timeout": ...}`` on stdin and writes ``1`` or ``0`` per
line. It imports only the standard library and ``math_verify`` (run by path, not as part of the package,
so it starts without torch), and runs ``math_verify`` in its own main thread, where its signal-based
timeouts work.
"""

from __future__ import annotations

import json
import logging
import sys


def main() -> None:
    from math_verify import parse, verify

    logging.getLogger("math_verify").setLevel(logging.CRITICAL)

    def candidates(text: str, seconds: int) -> list:
        # A bare "x^2+1" parses as a Python expression ("^" is xor): read LaTeX-looking text as math mode.
        if "$" not in text and any(c in text for c in "\\^{}"):
            text = f"${text}$"
        return parse(text, parsing_timeout=seconds)

    print("ready", flush=True)
    for line in sys.stdin:
        try:
            request = json.loads(line)
            seconds = max(1, int(request["timeout"]))
            ok = verify(candidates(request["gold"], seconds), candidates(request["pred"], seconds), seconds)
        except Exception:  # math_verify on arbitrary text: any failure means "not shown equal"
            ok = False
        print(int(bool(ok)), flush=True)


if __name__ == "__main__":
    main()
