"""One way to keep credentials out of what the project writes: logs, failure reasons, run records, messages.

Servers and proxies may echo a request's headers or URL in an error body, so any text that came back from a server
passes through :func:`mask_secrets` before it is logged or stored (the LLM judge's log lines, the evaluation
harness's failure reasons, ``run.json`` and its stop messages).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

#: What stands for a secret.
MASK = "***"
#: Authorization schemes' credentials, ``authorization``/``api_key``/``password``/``token`` style values, URL user info.
_AUTH_SCHEME = re.compile(r"(?i)(bearer|basic)\s+[^\s\"',;}]+")
_KEY_VALUE = re.compile(
    r"(?i)((?:authorization|api[-_]?key|x-api-key|password|token)[\"']?\s*[:=]\s*[\"']?)[^\s\"',;}]+"
)
_URL_USER_INFO = re.compile(r"(?<=://)[^/\s@]+@")


def mask_secrets(text: str, known: Iterable[str | None] = ()) -> str:
    """``text`` with the ``known`` secrets (e.g. the API key in use) and every credential-shaped value masked."""
    for secret in known:
        if secret:
            text = text.replace(secret, MASK)
    text = _AUTH_SCHEME.sub(lambda m: f"{m[1]} {MASK}", text)
    text = _KEY_VALUE.sub(lambda m: f"{m[1]}{MASK}", text)
    return _URL_USER_INFO.sub(f"{MASK}@", text)
