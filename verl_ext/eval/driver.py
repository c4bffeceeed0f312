"""The evaluation driver: every question through veRL's own ``AgentLoopWorker`` with the recipe's loop and reward.

Per question: the row as the recipe's dataset hook builds it (``RLHFDataset`` path: frame, pixel bounds,
prompt), ``eval.n`` copies in one ``generate_sequences`` call with ``validate=True`` (so the sampling settings
are ``rollout.val_kwargs``: greedy by default), the recipe's ``compute_score`` through veRL's
``RewardLoopWorker`` (the agent loop calls it per trajectory exactly as in training), then one record per
sample appended to ``trajectories.jsonl``. A row that cannot be loaded, a processor, tool or back-end error on
one question, or a question still unfinished after ``eval.question_timeout`` seconds is recorded as failed with
the reason; the run goes on. At the end: ``summary.json``, ``summary.md`` (printed) and ``report.html``.
One run at a time writes an ``out_dir`` (a lock), and only into one whose ``run.json`` matches its settings.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pyarrow.parquet as pq
from omegaconf import DictConfig, ListConfig, OmegaConf
from tqdm import tqdm

from verl_ext.eval.backends import EvalConfigError, check_backend, make_client, redact
from verl_ext.eval.metrics import summarize
from verl_ext.eval.records import (
    RecordFile,
    base_record,
    failed_record,
    file_digest,
    out_dir_lock,
    question_key,
    trajectory_records,
    write_atomic,
)

SUMMARY_JSON, SUMMARY_MD, TRAJECTORIES, REPORT = "summary.json", "summary.md", "trajectories.jsonl", "report.html"
#: What produced the records in an out_dir; a rerun may resume only with the same values.
RUN_JSON = "run.json"
_RUN_KEYS = (
    "actor_rollout_ref.model.path",
    "eval.backend",
    "eval.model_name",
    "eval.n",
    "data.min_pixels",
    "data.max_pixels",
    "data.custom_cls",
    "actor_rollout_ref.rollout.val_kwargs",
    "actor_rollout_ref.rollout.prompt_length",
    "actor_rollout_ref.rollout.response_length",
    "actor_rollout_ref.rollout.agent.default_agent_loop",
    "actor_rollout_ref.rollout.multi_turn.format",
    "actor_rollout_ref.rollout.multi_turn.max_assistant_turns",
    "actor_rollout_ref.rollout.multi_turn.max_user_turns",
    "actor_rollout_ref.rollout.multi_turn.max_tool_response_length",
    "reward.custom_reward_function.path",
    "reward.custom_reward_function.name",
    "reward.custom_reward_function.reward_kwargs",
)
#: Settings naming a file whose content changes a record (the zoom tool's and the agent loop's YAML): its digest.
_RUN_FILE_KEYS = (
    "actor_rollout_ref.rollout.multi_turn.tool_config_path",
    "actor_rollout_ref.rollout.agent.agent_loop_config_path",
)
#: Raw columns read for records (never the images: failed rows must be described without decoding them).
_RAW_COLUMNS = ("data_source", "reward_model", "extra_info")


def val_files(config: DictConfig) -> list[str]:
    files = config.data.get("val_files")
    if isinstance(files, str):
        files = [files]
    files = [str(f) for f in (OmegaConf.to_container(files) if isinstance(files, ListConfig) else files or [])]
    if not files:
        raise EvalConfigError("no evaluation data: set data.val_files=[<file>.parquet, ...] (the converters' output)")
    missing = [f for f in files if not Path(f).is_file()]
    if missing:
        raise EvalConfigError(f"data.val_files names files that do not exist: {missing}")
    return files


def check_config(config: DictConfig) -> dict[str, str]:
    """Everything that can be wrong before work starts; returns the evaluation files with their SHA-256."""
    if not config.eval.get("out_dir"):
        raise EvalConfigError("set eval.out_dir (results go there; a rerun with the same folder resumes)")
    if int(config.eval.n) < 1 or int(config.eval.max_concurrency) < 1:
        raise EvalConfigError("eval.n and eval.max_concurrency must be >= 1")
    if not float(config.eval.request_timeout) > 0 or not float(config.eval.question_timeout) > 0:
        raise EvalConfigError("eval.request_timeout and eval.question_timeout must be > 0 (seconds)")
    digests = {file: file_digest(file) for file in val_files(config)}
    seen: dict[str, str] = {}
    for file, digest in digests.items():
        if digest in seen:
            raise EvalConfigError(f"data.val_files names the same data twice ({seen[digest]} and {file})")
        seen[digest] = file
    if not config.actor_rollout_ref.model.get("path"):
        raise EvalConfigError(
            "set actor_rollout_ref.model.path (the checkpoint, or for eval.backend=openai a folder "
            "holding the served model's tokenizer and processor)"
        )
    check_backend(config)
    return digests


def run_signature(config: DictConfig, digests: dict[str, str]) -> dict[str, Any]:
    """Every setting that decides what a record means: model, server, samples, frame, decoding, turn limits, loop
    and tool files, reward, and the data (each file's name and SHA-256; the paths may move)."""
    signature: dict[str, Any] = {
        key: OmegaConf.to_container(value) if isinstance(value, DictConfig | ListConfig) else value
        for key in _RUN_KEYS
        for value in [OmegaConf.select(config, key)]
    }
    base_url = config.eval.get("base_url")
    signature["eval.base_url"] = redact(str(base_url)) if base_url else None
    for key in _RUN_FILE_KEYS:
        path = OmegaConf.select(config, key)
        signature[key] = f"sha256:{file_digest(path)}" if path and Path(path).is_file() else path
    signature["data"] = sorted(f"{Path(file).name} sha256:{digest}" for file, digest in digests.items())
    return json.loads(json.dumps(signature))


def check_resumable(config: DictConfig, signature: dict[str, Any]) -> None:
    """Refuse to add records to an out_dir whose records came from other settings (numbers would mix)."""
    path = Path(config.eval.out_dir) / RUN_JSON
    if not path.exists():
        return
    try:
        before = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        before = None
    if not isinstance(before, dict):
        raise EvalConfigError(f"{path} is not a run description; set a new eval.out_dir")
    changed = sorted(k for k in set(before) | set(signature) if before.get(k) != signature.get(k))
    if changed:
        missing = [k for k in changed if k not in before]
        note = f" ({', '.join(missing)} not recorded: an earlier version of the harness wrote it)" if missing else ""
        raise EvalConfigError(
            f"eval.out_dir={config.eval.out_dir} holds results of a run with other settings or data "
            f"({', '.join(changed)}){note}; set a new eval.out_dir, or the settings and data of that run"
        )


def run_eval(config: DictConfig) -> dict[str, float]:
    """Check the config, hold the out_dir, evaluate every unfinished question, write the outputs; returns
    summary.json's content."""
    digests = check_config(config)
    with out_dir_lock(Path(config.eval.out_dir)):
        signature = run_signature(config, digests)
        check_resumable(config, signature)
        return asyncio.run(_run(config, digests, signature))


class QuestionFailed(Exception):
    """One question could not be evaluated; the message is the reason its records carry."""


class _InProcessReward:
    """A ``RewardLoopWorker`` in this process behind the handle call the agent loop makes
    (``await handle.compute_score.remote(data)``): the trainer's reward path without a Ray actor."""

    def __init__(self, worker: Any) -> None:
        self.compute_score = SimpleNamespace(remote=worker.compute_score)


async def _run(config: DictConfig, digests: dict[str, str], signature: dict[str, Any]) -> dict[str, float]:
    from verl.experimental.agent_loop.agent_loop import AgentLoopWorker
    from verl.experimental.reward_loop.reward_loop import RewardLoopWorker
    from verl.protocol import DataProto
    from verl.utils import hf_processor, hf_tokenizer
    from verl.utils.dataset.rl_dataset import collate_fn, get_dataset_class

    from verl_ext.tools.agent_loop import call_raising_normally

    out_dir = Path(config.eval.out_dir)
    write_atomic(out_dir / RUN_JSON, json.dumps(signature, indent=1, sort_keys=True) + "\n")
    n = int(config.eval.n)
    if n > 1 and float(config.actor_rollout_ref.rollout.val_kwargs.temperature) == 0:
        print("[eval] eval.n > 1 with greedy decoding repeats one answer; set actor_rollout_ref.rollout.val_kwargs.*")
    model_path = str(config.actor_rollout_ref.model.path)
    tokenizer, processor = hf_tokenizer(model_path), hf_processor(model_path)
    client, server_manager = await make_client(config, tokenizer)  # the manager (vllm) is held for the whole run
    reward = _InProcessReward(RewardLoopWorker(config))
    worker = AgentLoopWorker(config, llm_client=client, reward_loop_worker_handles=[reward])
    dataset_cls = get_dataset_class(config.data)
    store = RecordFile(out_dir / TRAJECTORIES, n, bool(config.eval.retry_failed))
    store.report_damaged()
    deadline = float(config.eval.question_timeout)

    todo = []
    for file, digest in digests.items():
        raw = pq.read_table(file, columns=list(_RAW_COLUMNS)).to_pylist()
        limit = len(raw) if config.eval.get("limit") is None else min(len(raw), int(config.eval.limit))
        pending = [p for p in range(limit) if question_key(file, p, digest) not in store.finished]
        if pending:
            try:
                dataset = dataset_cls(file, tokenizer, config.data, processor=processor)
            except Exception as e:  # the dataset hook refuses the file (rows it cannot serve): nothing evaluated yet
                raise EvalConfigError(f"data.val_files: {file} cannot be evaluated: {describe(e)}") from e
            if len(dataset) != len(raw):
                raise EvalConfigError(f"{file}: the dataset kept {len(dataset)} of {len(raw)} rows; evaluate every row")
            todo.extend((file, digest, p, dataset, raw[p]) for p in pending)

    slots = asyncio.Semaphore(int(config.eval.max_concurrency))

    async def attempt(position: int, dataset: Any) -> tuple[dict[str, Any], Any]:
        """The question's row and its ``n`` trajectories; a failure is raised as :class:`QuestionFailed`."""
        try:
            row = await asyncio.to_thread(call_raising_normally, dataset.__getitem__, position)
        except Exception as e:  # missing or corrupt image, bad row: this question only
            raise QuestionFailed(f"row could not be loaded: {describe(e)}") from e
        batch = DataProto.from_single_dict(collate_fn([row] * n), meta_info={"validate": True})
        try:
            return row, await worker.generate_sequences(batch)
        except Exception as e:  # processor, tool or back-end error, timeout after its retries
            raise QuestionFailed(f"generation failed: {describe(e)}") from e

    async def evaluate(file: str, digest: str, position: int, dataset: Any, raw_row: dict) -> list[dict[str, Any]]:
        bases = [base_record(file, digest, position, s, raw_row) for s in range(n)]
        async with slots:
            try:  # the deadline is the last guard: whatever hangs, the question ends as a failure
                row, out = await asyncio.wait_for(attempt(position, dataset), deadline)
            except QuestionFailed as e:
                return [failed_record(b, str(e)) for b in bases]
            except asyncio.TimeoutError:
                reason = f"question unfinished after eval.question_timeout={deadline:g} s"
                return [failed_record(b, reason) for b in bases]
        return trajectory_records([row] * n, bases, out, tokenizer)

    progress = tqdm(total=len(todo), desc=f"eval ({config.eval.backend})", unit="q", dynamic_ncols=True)
    tasks = [asyncio.create_task(evaluate(*item)) for item in todo]
    try:
        for finished in asyncio.as_completed(tasks):
            records = await finished
            store.append(records)
            progress.update(1)
            progress.set_postfix(_running(store.records))
    finally:
        progress.close()
        for task in tasks:
            task.cancel()
    return write_outputs(config, store.records, out_dir)


def describe(error: BaseException) -> str:
    """An exception and the causes it chains (the openai client wraps transport errors), one line."""
    parts, seen = [], set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        parts.append(f"{type(error).__name__}: {error}" if str(error) else type(error).__name__)
        error = error.__cause__
    return " <- ".join(parts)


def _running(records: list[dict[str, Any]]) -> dict[str, str]:
    done = [r for r in records if not r.get("failed")]
    acc = sum(float(r.get("acc") or 0.0) for r in records) / len(records) if records else 0.0
    return {"acc": f"{acc:.3f}", "failed": str(len(records) - len(done))}


def write_outputs(config: DictConfig, records: list[dict[str, Any]], out_dir: Path) -> dict[str, float]:
    """summary.json, summary.md (also printed) and report.html from all records of the run."""
    from verl_ext.eval.report import summary_markdown, write_report

    srpo = config.algorithm.get("srpo") or {}
    num_bins = int(srpo.get("num_bins", 3))
    edges = srpo.get("bin_edges")
    edges = list(edges) if edges is not None else None
    summary = summarize(records, num_bins, edges)
    write_atomic(out_dir / SUMMARY_JSON, json.dumps(summary, indent=1, sort_keys=True) + "\n")
    markdown = summary_markdown(summary)
    write_atomic(out_dir / SUMMARY_MD, markdown)
    write_report(records, out_dir / REPORT, per_source_images=int(config.eval.report_images_per_source))
    print(markdown)
    return summary
