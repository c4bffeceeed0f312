"""Bad input never stops the run and never counts as correct; a rerun resumes; an impossible config stops first."""

from __future__ import annotations

import json
import socket

import pytest
from eval_fixtures import (
    ChatServer,
    answer,
    first_user_text,
    overrides,
    read_jsonl,
    right_answers,
    run_eval,
    user_text,
)


def test_failures_are_recorded_counted_and_retried(vstar, tmp_path, tiny_model_dir):
    path, rows = vstar
    image = rows[0]["images"][0]["path"]
    original = open(image, "rb").read()
    open(image, "wb").write(b"not a jpeg at all")  # row 0: corrupt image
    table = right_answers(rows)
    table[user_text(rows[1])] = [("status", 500)]  # row 1: the server errors
    table[user_text(rows[2])] = [("hang", 5)]  # row 2: the server hangs past the request timeout
    out = tmp_path / "out"

    def args(server: ChatServer, *extra: str) -> list[str]:
        return overrides(tiny_model_dir, [path], out, server.base_url, "eval.request_timeout=1", *extra)

    with ChatServer(table) as server:  # one server for every run: run.json holds its address
        summary = run_eval(args(server))
        records = {r["position"]: r for r in read_jsonl(out / "trajectories.jsonl")}
        assert "row could not be loaded" in records[0]["failed"]
        assert "InternalServerError" in records[1]["failed"]
        assert "Timeout" in records[2]["failed"]
        assert records[3]["failed"] is None and records[3]["acc"] == 1.0
        assert all(records[k]["acc"] == 0.0 for k in (0, 1, 2))
        assert summary["vstar/n"] == 4 and summary["vstar/failed"] == 3 and summary["vstar/acc"] == 0.25

        # eval.retry_failed=false keeps the failures: nothing is asked again.
        server.table = right_answers(rows)
        server.requests.clear()
        kept = run_eval(args(server, "eval.retry_failed=false"))
        assert server.requests == []
        assert kept == summary

        # Default: failed questions are retried; the finished one is not.
        open(image, "wb").write(original)
        retried = run_eval(args(server))
        asked = [first_user_text(r) for r in server.requests]
    assert len(asked) == 3 and not any(user_text(rows[3]) in text for text in asked)
    assert retried["vstar/failed"] == 0 and retried["vstar/acc"] == 1.0
    # The file is only appended: the three failures, then their retries; the last record of each question counts.
    assert len(read_jsonl(out / "trajectories.jsonl")) == 7


def valid_records(path) -> list[dict]:
    """The records of a trajectories.jsonl that may hold damaged lines."""
    out = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and "sample" in record:
            out.append(record)
    return out


def test_rerun_keeps_every_valid_record_and_reports_damaged_lines(vstar, tmp_path, tiny_model_dir, capsys):
    path, rows = vstar
    out = tmp_path / "out"
    with ChatServer(right_answers(rows)) as server:
        first = run_eval(overrides(tiny_model_dir, [path], out, server.base_url))
        lines = (out / "trajectories.jsonl").read_text().splitlines(keepends=True)
        assert len(lines) == 4
        # Damage in the middle (not JSON; JSON that is no record) before valid records, and a write cut short.
        damaged = [lines[0], "{not json\n", '{"key": 3}\n', lines[1], "[1, 2]\n", lines[3], lines[2][:40]]
        text = "".join(damaged)
        (out / "trajectories.jsonl").write_text(text)
        server.requests.clear()
        capsys.readouterr()
        second = run_eval(overrides(tiny_model_dir, [path], out, server.base_url))
        assert len(server.requests) == 1  # only the question whose line was cut
    assert "line 2, 3, 5, 7" in capsys.readouterr().err
    after = (out / "trajectories.jsonl").read_text()
    assert after.startswith(text + "\n")  # nothing rewritten away; the cut line is ended before the next record
    records = valid_records(out / "trajectories.jsonl")
    assert len(records) == 4 and len({r["key"] for r in records}) == 4
    assert second == first
    # Results of another model (or frame, decoding, reward) never mix into these.
    with ChatServer(right_answers(rows)) as server, pytest.raises(SystemExit):
        run_eval(overrides(tiny_model_dir, [path], out, server.base_url, "data.max_pixels=40000"))
    assert (out / "trajectories.jsonl").read_text() == after


def test_n_samples_give_mean_and_pass(vstar, tmp_path, tiny_model_dir):
    """Two samples per question; the server answers each question's first request right and later ones wrong."""
    path, rows = vstar
    out = tmp_path / "out"
    seen: dict[str, int] = {}

    class Alternating(ChatServer):
        def reply(self, request):
            row = next(r for r in rows if user_text(r) in first_user_text(request))
            seen[user_text(row)] = seen.get(user_text(row), 0) + 1
            return answer(row["reward_model"]["ground_truth"] if seen[user_text(row)] == 1 else "Z")

    with Alternating({}) as server:
        summary = run_eval(overrides(tiny_model_dir, [path], out, server.base_url, "eval.n=2"))
    assert summary["vstar/samples"] == 8 and summary["vstar/n"] == 4
    assert summary["vstar/acc"] == 0.5 and summary["vstar/pass@2"] == 1.0


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (["eval.backend=tgi"], "eval.backend"),
        (["data.val_files=[]"], "data.val_files"),
        (["eval.out_dir=null"], "eval.out_dir"),
        ([f"eval.base_url=http://127.0.0.1:{_closed_port()}/v1"], "eval.base_url"),
        (["eval.model_name=other-model"], "eval.model_name"),
        (["eval.backend=vllm", "actor_rollout_ref.rollout.load_format=dummy"], "load_format"),
    ],
)
def test_impossible_config_stops_before_any_work(change, message, vstar, tmp_path, tiny_model_dir, capsys):
    path, rows = vstar
    out = tmp_path / "out"
    with ChatServer(right_answers(rows)) as server:
        with pytest.raises(SystemExit) as stop:
            run_eval(overrides(tiny_model_dir, [path], out, server.base_url, *change))
        assert server.requests == []
    assert stop.value.code == 2
    assert message in capsys.readouterr().err
    assert not (out / "trajectories.jsonl").exists()
