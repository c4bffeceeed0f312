"""The evaluation driver: every question through veRL's own ``AgentLoopWorker`` with the recipe's loop and reward.

Per question: the row as the recipe's dataset hook builds it (``RLHFDataset`` path: frame, pixel bounds,
prompt), ``eval.n`` copies in one ``generate_sequences`` call with ``validate=True`` (so the sampling settings
are ``rollout.val_kwargs``: greedy by default), the recipe's ``compute_score`` through veRL's
``RewardLoopWorker`` (the agent loop calls it per trajectory exactly as in training), then one record per
sample appended to ``trajectories.jsonl``. A row that cannot be loaded or a back-end error on one question is
recorded as failed with the reason; the run goes on. At the end: ``summary.json``, ``summary.md`` (printed)
and ``report.html``.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pyarrow.parquet as pq
from omegaconf import DictConfig, ListConfig, OmegaConf
from tqdm import tqdm

from verl_ext.eval.backends import EvalConfigError, check_backend, make_client
from verl_ext.eval.metrics import summarize
from verl_ext.eval.records import RecordFile, base_record, failed_record, question_key, trajectory_records

SUMMARY_JSON, SUMMARY_MD, TRAJECTORIES, REPORT = "summary.json", "summary.md", "trajectories.jsonl", "report.html"
#: What produced the records in an out_dir; a rerun may resume only with the same values.
RUN_JSON = "run.json"
_RUN_KEYS = (
    "actor_rollout_ref.model.path",
    "eval.model_name",
    "data.min_pixels",
    "data.max_pixels",
    "actor_rollout_ref.rollout.val_kwargs",
    "actor_rollout_ref.rollout.multi_turn.format",
    "actor_rollout_ref.rollout.multi_turn.max_assistant_turns",
    "actor_rollout_ref.rollout.response_length",
    "reward.custom_reward_function.reward_kwargs",
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


def check_config(config: DictConfig) -> list[str]:
    """Everything that can be wrong before work starts; returns the evaluation files."""
    if not config.eval.get("out_dir"):
        raise EvalConfigError("set eval.out_dir (results go there; a rerun with the same folder resumes)")
    if int(config.eval.n) < 1 or int(config.eval.max_concurrency) < 1:
        raise EvalConfigError("eval.n and eval.max_concurrency must be >= 1")
    files = val_files(config)
    if not config.actor_rollout_ref.model.get("path"):
        raise EvalConfigError(
            "set actor_rollout_ref.model.path (the checkpoint, or for eval.backend=openai a folder "
            "holding the served model's tokenizer and processor)"
        )
    check_backend(config)
    check_resumable(config)
    return files


def run_signature(config: DictConfig) -> dict[str, Any]:
    """The settings that decide what a record means (model, frame, decoding, turn limits, reward)."""
    return {key: OmegaConf.to_container(value) if isinstance(value, DictConfig | ListConfig) else value
            for key in _RUN_KEYS for value in [OmegaConf.select(config, key)]}  # fmt: skip


def check_resumable(config: DictConfig) -> None:
    """Refuse to add records to an out_dir whose records came from other settings (numbers would mix)."""
    path = Path(config.eval.out_dir) / RUN_JSON
    if not path.exists():
        return
    before, now = json.loads(path.read_text()), json.loads(json.dumps(run_signature(config)))
    changed = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
    if changed:
        raise EvalConfigError(
            f"eval.out_dir={config.eval.out_dir} holds results of a run with other settings ({', '.join(changed)}); "
            "set a new eval.out_dir, or the settings of that run"
        )


def run_eval(config: DictConfig) -> dict[str, float]:
    """Check the config, evaluate every unfinished question, write the outputs; returns summary.json's content."""
    files = check_config(config)
    return asyncio.run(_run(config, files))


class _InProcessReward:
    """A ``RewardLoopWorker`` in this process behind the handle call the agent loop makes
    (``await handle.compute_score.remote(data)``): the trainer's reward path without a Ray actor."""

    def __init__(self, worker: Any) -> None:
        self.compute_score = SimpleNamespace(remote=worker.compute_score)


async def _run(config: DictConfig, files: list[str]) -> dict[str, float]:
    from verl.experimental.agent_loop.agent_loop import AgentLoopWorker
    from verl.experimental.reward_loop.reward_loop import RewardLoopWorker
    from verl.protocol import DataProto
    from verl.utils import hf_processor, hf_tokenizer
    from verl.utils.dataset.rl_dataset import collate_fn, get_dataset_class

    out_dir = Path(config.eval.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _atomic_write(out_dir / RUN_JSON, json.dumps(run_signature(config), indent=1, sort_keys=True) + "\n")
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

    todo = []
    for file in files:
        raw = pq.read_table(file, columns=list(_RAW_COLUMNS)).to_pylist()
        limit = len(raw) if config.eval.get("limit") is None else min(len(raw), int(config.eval.limit))
        pending = [p for p in range(limit) if question_key(file, p) not in store.finished]
        if pending:
            dataset = dataset_cls(file, tokenizer, config.data, processor=processor)
            if len(dataset) != len(raw):
                raise EvalConfigError(f"{file}: the dataset kept {len(dataset)} of {len(raw)} rows; evaluate every row")
            todo.extend((file, p, dataset, raw[p]) for p in pending)

    slots = asyncio.Semaphore(int(config.eval.max_concurrency))

    async def evaluate(file: str, position: int, dataset: Any, raw_row: dict) -> list[dict[str, Any]]:
        bases = [base_record(file, position, s, raw_row) for s in range(n)]
        async with slots:
            try:
                row = await asyncio.to_thread(dataset.__getitem__, position)
            except Exception as e:  # missing or corrupt image, bad row: this question only
                return [failed_record(b, f"row could not be loaded: {type(e).__name__}: {e}") for b in bases]
            batch = DataProto.from_single_dict(collate_fn([row] * n), meta_info={"validate": True})
            try:
                out = await worker.generate_sequences(batch)
            except Exception as e:  # back-end error or timeout after its retries
                return [failed_record(b, f"generation failed: {type(e).__name__}: {e}") for b in bases]
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
    _atomic_write(out_dir / SUMMARY_JSON, json.dumps(summary, indent=1, sort_keys=True) + "\n")
    markdown = summary_markdown(summary)
    _atomic_write(out_dir / SUMMARY_MD, markdown)
    write_report(records, out_dir / REPORT, per_source_images=int(config.eval.report_images_per_source))
    print(markdown)
    return summary


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
