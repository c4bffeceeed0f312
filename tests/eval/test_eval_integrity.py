"""Evaluation output integrity, through the harness entrypoint: one run per out_dir, temporaries of unique names,
question keys unique across files of one name, run.json refusing a rerun with other settings or data, and data
fields escaped in summary.md and report.html."""

from __future__ import annotations

import re
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from eval_fixtures import ChatServer, overrides, read_jsonl, right_answers, run_eval, vstar_parquet

from verl_ext.eval.records import LOCK_FILE, out_dir_lock


def rewrite(path, rows) -> None:
    pq.write_table(pa.Table.from_pylist(rows, schema=pq.read_schema(path)), path)


def test_a_second_run_in_one_out_dir_stops_naming_the_first(vstar, tmp_path, tiny_model_dir, capsys):
    path, rows = vstar
    out = tmp_path / "out"
    with ChatServer(right_answers(rows)) as server:
        args = overrides(tiny_model_dir, [path], out, server.base_url)
        with out_dir_lock(out):  # what a running evaluation holds
            with pytest.raises(SystemExit) as stop:
                run_eval(args)
            assert stop.value.code == 2
            assert server.requests == []
        err = capsys.readouterr().err
        assert "in use by another evaluation" in err and f"pid {(out / LOCK_FILE).read_text().strip()}" in err
        assert not (out / "trajectories.jsonl").exists()
        # A lock file left by a process that died holds no lock (flock ends with its process): the run goes ahead.
        (out / LOCK_FILE).write_text("999999999\n")
        summary = run_eval(args)
    assert summary["vstar/n"] == 4


def test_outputs_go_through_temporaries_of_their_own(vstar, tmp_path, tiny_model_dir):
    """Files named like another run's temporaries are neither overwritten nor renamed into place."""
    path, rows = vstar
    out = tmp_path / "out"
    out.mkdir()
    others = {name: f"another run's {name}\n" for name in ("summary.json.tmp", "summary.md.tmp", "report.html.tmp",
                                                           "run.json.tmp", "trajectories.jsonl.tmp")}  # fmt: skip
    for name, text in others.items():
        (out / name).write_text(text)
    with ChatServer(right_answers(rows)) as server:
        run_eval(overrides(tiny_model_dir, [path], out, server.base_url))
    assert {name: (out / name).read_text() for name in others} == others
    assert (out / "summary.json").read_text().startswith("{")
    outputs = {"report.html", "run.json", LOCK_FILE, "summary.json", "summary.md", "trajectories.jsonl"}
    assert {p.name for p in out.iterdir()} == outputs | set(others)  # and nothing of this run's left over


def test_files_of_one_name_in_different_folders_keep_their_questions_apart(tmp_path, tiny_model_dir, capsys):
    first = vstar_parquet(tmp_path / "a")
    second = vstar_parquet(tmp_path / "b")
    assert first.name == second.name
    rows = pq.read_table(second).to_pylist()
    rewrite(second, rows[::-1])  # the same questions in another order: another file
    out = tmp_path / "out"
    with ChatServer(right_answers(rows)) as server:
        summary = run_eval(overrides(tiny_model_dir, [first, second], out, server.base_url))
        records = read_jsonl(out / "trajectories.jsonl")
        assert summary["vstar/n"] == 8 and len({r["key"] for r in records}) == 8
        # The same data twice would count every question twice: refused.
        twin = tmp_path / "c" / first.name
        twin.parent.mkdir()
        shutil.copy(first, twin)
        with pytest.raises(SystemExit):
            run_eval(overrides(tiny_model_dir, [first, twin], tmp_path / "out2", server.base_url))
    assert "the same data twice" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("change", "named"),
    [("server", "eval.base_url"), ("n", "eval.n"), ("data", "data")],
)
def test_a_rerun_with_other_settings_or_data_stops(change, named, vstar, tmp_path, tiny_model_dir, capsys):
    """A rerun into an out_dir against another server serving the same model name, with another eval.n, or on
    data of the same file name but other content would mix two runs' records: it stops, naming what changed."""
    path, rows = vstar
    out = tmp_path / "out"
    with ChatServer(right_answers(rows)) as server, ChatServer(right_answers(rows)) as other:
        run_eval(overrides(tiny_model_dir, [path], out, server.base_url))
        before = (out / "trajectories.jsonl").read_text()
        extra = ["eval.n=2"] if change == "n" else []
        if change == "data":
            rows[0]["extra_info"]["question"] = "another question"
            rewrite(path, rows)
        url = other.base_url if change == "server" else server.base_url
        with pytest.raises(SystemExit) as stop:
            run_eval(overrides(tiny_model_dir, [path], out, url, *extra))
        assert other.requests == []
    assert stop.value.code == 2
    changed = re.search(r"other settings or data \(([^)]*)\)", capsys.readouterr().err).group(1)
    assert changed.split(", ") == [named]
    assert (out / "trajectories.jsonl").read_text() == before


def unescaped_pipes(line: str) -> int:
    return len(re.findall(r"(?<!\\)\|", line))


def test_data_fields_are_escaped_in_summary_and_report(vstar, tmp_path, tiny_model_dir):
    """A category holding a table bar, a line break and HTML stays one cell of summary.md and text in report.html."""
    path, rows = vstar
    category = "a|b\nc<b>x</b>"
    rows[0]["extra_info"]["category"] = category
    rewrite(path, rows)
    out = tmp_path / "out"
    with ChatServer(right_answers(rows)) as server:
        summary = run_eval(overrides(tiny_model_dir, [path], out, server.base_url))
    assert summary[f"vstar/{category}/acc"] == 1.0
    markdown = (out / "summary.md").read_text()
    assert "| a\\|b c\\<b\\>x\\</b\\>/acc | 1.0000 |" in markdown
    for table in re.findall(r"(?:^\|.*\n)+", markdown, flags=re.M):
        lines = table.splitlines()
        assert {unescaped_pipes(line) for line in lines} == {unescaped_pipes(lines[0])}, table
    page = (out / "report.html").read_text()
    assert "<b>x</b>" not in page and "a|b\nc&lt;b&gt;x&lt;/b&gt;" in page
