"""Helpers for the evaluation tests: a local OpenAI-compatible server answering from a table, eval sets written
by the project's own converters (from fixtures in the real source formats), and the harness entrypoint."""

from __future__ import annotations

import base64
import io
import json
import re
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from PIL import Image

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "data_prep"))

import dp_fixtures  # noqa: E402

MODEL_NAME = "tiny-served"
#: A server never answers more than this many requests (it stops by itself).
MAX_REQUESTS = 400
#: Longest a "hanging" answer holds its connection.
MAX_HANG_S = 5.0
#: Seconds between the bytes of a trickled reply (each read is quick; the whole reply takes long).
TRICKLE_S = 0.05

Reply = str | tuple[str, Any]


class ChatServer:
    """A small OpenAI-compatible server on 127.0.0.1: ``/v1/models`` and ``/v1/chat/completions``.

    ``table`` maps a text the conversation's first user turn contains to the assistant's replies, turn by turn
    (the turn is the number of assistant messages already in the conversation). A reply is the text, or
    ``("status", code)`` to fail the request, ``("hang", seconds)`` to hold it open, or a misbehaving server's
    reply: ``("trickle", text)`` sends a complete reply one byte every ``TRICKLE_S``, ``("huge", n)`` a reply of
    ``n`` characters, ``("echo", code)`` fails with a body quoting the request's headers (as some proxies do),
    ``("big_error", n)`` fails (400) with an error message of ``n`` characters.
    Every request body is kept, ``headers`` every request's headers.
    """

    def __init__(self, table: dict[str, list[Reply]]) -> None:
        self.table = table
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self._stop = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, code: int, payload: dict[str, Any], trickle: bool = False) -> None:
                body = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not trickle:
                    self.wfile.write(body)
                    return
                try:
                    for k in range(len(body)):
                        if server._stop.wait(TRICKLE_S):
                            return
                        self.wfile.write(body[k : k + 1])
                        self.wfile.flush()
                except OSError:  # the client gave up
                    return

            def do_GET(self) -> None:
                if self.path.rstrip("/").endswith("/models"):
                    self._send(200, {"object": "list", "data": [{"id": MODEL_NAME, "object": "model"}]})
                else:
                    self._send(404, {"error": {"message": "not found"}})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                request = json.loads(self.rfile.read(length))
                if len(server.requests) >= MAX_REQUESTS:
                    self._send(429, {"error": {"message": "test server request cap reached"}})
                    return
                server.requests.append(request)
                server.headers.append(dict(self.headers))
                reply = server.reply(request)
                kind, arg = reply if isinstance(reply, tuple) else ("text", reply)
                if kind == "status":
                    self._send(int(arg), {"error": {"message": "scripted failure"}})
                    return
                if kind in ("echo", "big_error"):
                    text = f"bad request: {dict(self.headers)}" if kind == "echo" else "e" * int(arg)
                    self._send(int(arg) if kind == "echo" else 400, {"error": {"message": text}})
                    return
                if kind == "hang":
                    server._stop.wait(min(float(arg), MAX_HANG_S))
                    arg = "<answer>A</answer>"
                text = "ab " * (int(arg) // 3) if kind == "huge" else arg
                message = {"role": "assistant", "content": text}
                choice = {"index": 0, "message": message, "finish_reason": "stop"}
                completion = {"id": "x", "object": "chat.completion", "created": 0, "model": MODEL_NAME}
                self._send(200, {**completion, "choices": [choice]}, trickle=kind == "trickle")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def reply(self, request: dict[str, Any]) -> Reply:
        text = first_user_text(request)
        turn = sum(1 for m in request["messages"] if m["role"] == "assistant")
        for needle, replies in self.table.items():
            if needle in text:
                return replies[min(turn, len(replies) - 1)]
        return "<think>no idea</think>\n<answer>Z</answer>"

    def requests_for(self, needle: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if needle in first_user_text(r)]

    def __enter__(self) -> ChatServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def first_user_text(request: dict[str, Any]) -> str:
    """The text of a chat request's first user turn (its image parts left out)."""
    user = next(m for m in request["messages"] if m["role"] == "user")
    if isinstance(user["content"], str):
        return user["content"]
    return "".join(p.get("text", "") for p in user["content"] if p["type"] == "text")


def images_of(request: dict[str, Any]) -> list[Image.Image]:
    """The images a chat request carries, decoded from their data URLs, in order."""
    out = []
    for message in request["messages"]:
        if isinstance(message["content"], list):
            for part in message["content"]:
                if part["type"] == "image_url":
                    data = re.sub(r"^data:image/\w+;base64,", "", part["image_url"]["url"])
                    out.append(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB"))
    return out


def answer(letter: str) -> str:
    return f"<think>I can see it.</think>\n<answer>{letter}</answer>"


def zoom(box: list[float]) -> str:
    return f"<think>Too small, zoom.</think>\n<box>{json.dumps(box)}</box>"


# --- eval sets written by the project's converters --------------------------------------------------------------


def vstar_parquet(tmp: Path) -> Path:
    """V* fixture (120x90 images, two categories) through data_prep/vstar_to_parquet.py."""
    dp_fixtures.write_vstar(tmp / "vstar_src")
    dp_fixtures.run_main("vstar_to_parquet.py", "--root", tmp / "vstar_src", "--out", tmp / "vstar")
    return _only(tmp / "vstar")


def hr_bench_parquet(tmp: Path, cycles: list[int], size: tuple[int, int] = (1400, 900)) -> Path:
    """HR-Bench 4K fixture through data_prep/hr_bench_to_parquet.py; ``cycles[k]`` is row k's cycle (unequal
    cycle sizes make the cycle average differ from the pooled accuracy). Rows alternate single/cross."""
    tsv = tmp / "hr_bench_4k.tsv"
    records = dp_fixtures.write_hr_bench(tsv, rows=len(cycles), width=size[0], height=size[1])
    for record, cycle in zip(records, cycles, strict=True):
        record["cycle_category"] = f"cycle_{cycle}"
    header = list(records[0])
    tsv.write_text("\n".join(["\t".join(header)] + ["\t".join(str(r[h]) for h in header) for r in records]) + "\n")
    dp_fixtures.run_main("hr_bench_to_parquet.py", "--tsv", tsv, "--out", tmp / "hr")
    return _only(tmp / "hr")


#: RefCOCO images large enough that the tiny pixel bounds scale them down.
REFCOCO_IMAGES = [(101, 640, 480), (102, 800, 560), (103, 560, 720)]


def refcoco_parquets(tmp: Path, monkeypatch: Any) -> dict[str, Path]:
    """RefCOCO fixture (REFER pickles, instances.json, JPEGs) through data_prep/refcoco_to_parquet.py."""
    monkeypatch.setattr(dp_fixtures, "IMAGES", REFCOCO_IMAGES)
    paths = dp_fixtures.write_refcoco(tmp / "refcoco_src")
    dp_fixtures.run_main(
        "refcoco_to_parquet.py", "--refer-root", paths["refer"], "--image-root", paths["images"],
        "--dataset", "refcoco", "--out", tmp / "refcoco",
    )  # fmt: skip
    return {p.stem: p for p in (tmp / "refcoco").glob("*.parquet")}


def _only(folder: Path) -> Path:
    files = sorted(folder.glob("*.parquet"))
    assert len(files) == 1, files
    return files[0]


def user_text(row: dict[str, Any]) -> str:
    """A row's user turn without its image slot: the key the test server's table finds the question by."""
    user = next(m for m in row["prompt"] if m["role"] == "user")
    return user["content"].replace("<image>", "").strip()


def right_answers(rows: list[dict[str, Any]]) -> dict[str, list[str]]:
    """A stub-server table that answers every row's question with its ground-truth letter."""
    return {user_text(r): [answer(r["reward_model"]["ground_truth"])] for r in rows}


def overrides(model_dir: Path, files: list[Path], out_dir: Path, base_url: str, *extra: str) -> list[str]:
    """Command-line overrides of an openai-back-end run on the tiny processor's pixel bounds."""
    from verl_ext.testing.tiny_qwen import TINY_MAX_PIXELS, TINY_MIN_PIXELS

    return [
        f"actor_rollout_ref.model.path={model_dir}",
        "data.val_files=[" + ",".join(str(f) for f in files) + "]",
        f"data.min_pixels={TINY_MIN_PIXELS}",
        f"data.max_pixels={TINY_MAX_PIXELS}",
        "data.max_prompt_length=1024",
        "data.max_response_length=1024",
        "actor_rollout_ref.rollout.agent.num_workers=1",
        "eval.backend=openai",
        f"eval.base_url={base_url}",
        f"eval.out_dir={out_dir}",
        "eval.max_concurrency=4",
        "eval.request_timeout=20",
        "eval.max_retries=0",
        *extra,
    ]


def run_eval(args: list[str]) -> dict[str, float]:
    """The entrypoint's ``main`` in this process (``python -m recipe.ground_r1.main_eval <args>``)."""
    from recipe.ground_r1.main_eval import main

    return main(args)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()
