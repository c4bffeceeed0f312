"""End to end on the real recipe (issue 19, part 2): SRPO vs GRPO and the Intra/Inter ablations on a task where
evidence scale matters, with a tiny Qwen2.5-VL on CPU.

    python experiments/e2e/run.py --out DIR            # the full experiment (see docs/experiments.md, section 2)
    python experiments/e2e/run.py --quick --out DIR    # the pipeline in a few minutes (CI)
    python experiments/e2e/run.py --out DIR --report   # only rebuild the table and plots from DIR's results

Stages, each skipped when its output is already there (so a stopped run resumes):

1. data: :mod:`verl_ext.testing.scale_task` writes ``train.parquet`` and the held-out ``test.parquet``;
2. warm start: the tiny policy learns the zoom protocol on this task (random boxes, no notion of where to look);
3. evaluation before training: ``python -m recipe.ground_r1.main_eval`` (``hf`` back end) on the held-out split;
4. per variant and seed: ``python -m recipe.ground_r1.main_ground_r1`` (veRL's v1 trainer, Ray, the zoom tool, the
   recipe's reward, the estimator, the FSDP2 actor on gloo, the ``hf`` rollout) for ``--steps`` steps from the warm
   start, veRL's file logger writing ``metrics.jsonl``; then the harness on the held-out split again;
5. report: ``table.md``, ``results.json`` and PNG plots (:mod:`verl_ext.plots`) from the runs' own metrics files and
   eval summaries.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from verl_ext.testing.report import read_steps  # noqa: E402
from verl_ext.testing.scale_task import PROMPT_LENGTH  # noqa: E402
from verl_ext.testing.tiny_policy import RESPONSE_LENGTH  # noqa: E402
from verl_ext.testing.tiny_qwen import TINY_MAX_PIXELS, TINY_MIN_PIXELS  # noqa: E402

#: Estimator variants: the recipe's overrides for each (the paper's ablations switch one SRPO term off).
VARIANTS: dict[str, list[str]] = {
    "srpo": ["algorithm.adv_estimator=srpo"],
    "grpo": ["algorithm.adv_estimator=grpo"],
    "srpo_intra_only": ["algorithm.adv_estimator=srpo", "algorithm.srpo.w_inter=0"],
    "srpo_inter_only": ["algorithm.adv_estimator=srpo", "algorithm.srpo.w_intra=0"],
}
#: The data source the task's rows carry (the harness names its metrics after it).
SOURCE = "visual_cot"
#: The recipe's SRPO bins (algorithm.srpo.num_bins, equal width), as the trainer's scale/* metrics use them.
NUM_BINS = 3
#: Steps at each end of training whose mean reward is compared (the "did the reward rise" numbers).
WINDOW = 10


def settings(quick: bool) -> dict[str, Any]:
    """Sizes of the full experiment, or of the quick pipeline check."""
    if quick:
        return dict(train=8, test=8, policy_steps=10, steps=2, seeds=[0], variants=["srpo", "grpo"], batch=2, n=4)
    return dict(train=64, test=32, policy_steps=300, steps=100, seeds=[0, 1, 2], variants=list(VARIANTS), batch=2, n=4)


def env() -> dict[str, str]:
    """The CPU run's environment (examples/run_tiny_cpu.sh): the CPU plugin in every process, a private Ray."""
    return {
        **os.environ,
        "VERL_USE_EXTERNAL_MODULES": "verl_ext.cpu.plugin",
        "VERL_PLATFORM": "cpu",
        "TOKENIZERS_PARALLELISM": "false",
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2"),
        "HYDRA_FULL_ERROR": "1",
        "RAY_ADDRESS": "local",
        "RAY_DEDUP_LOGS": "0",
        "PYTHONWARNINGS": "ignore",
    }


class StageFailed(RuntimeError):
    """A stage's command exited non-zero; the message holds the end of its log."""


def run_logged(cmd: list[str], log: Path, extra_env: dict[str, str] | None = None) -> float:
    """Run ``cmd`` in the repository with its output in ``log``; the wall time. Raises :class:`StageFailed`."""
    start = time.monotonic()
    print(f"[e2e] {' '.join(cmd[:3])} ... (log: {log})", flush=True)
    with log.open("w") as handle:
        environment = {**env(), **(extra_env or {})}
        proc = subprocess.run(cmd, cwd=REPO, env=environment, stdout=handle, stderr=subprocess.STDOUT)
    if proc.returncode:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
        raise StageFailed(f"[e2e] failed ({proc.returncode}): {' '.join(cmd)}\n{tail}")
    return time.monotonic() - start


def common(model: Path) -> list[str]:
    """Overrides shared by training and evaluation: the tiny model, its pixel bounds and token budgets."""
    return [
        f"actor_rollout_ref.model.path={model}",
        f"data.min_pixels={TINY_MIN_PIXELS}",
        f"data.max_pixels={TINY_MAX_PIXELS}",
        f"data.max_prompt_length={PROMPT_LENGTH}",
        f"data.max_response_length={RESPONSE_LENGTH}",
        "data.filter_overlong_prompts=False",
        "actor_rollout_ref.rollout.agent.num_workers=1",
    ]


def evaluate(model: Path, test: Path, out: Path) -> float:
    """The harness (greedy, ``hf`` back end) on the held-out split; its wall time."""
    out.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "recipe.ground_r1.main_eval", *common(model), f"data.val_files=[{test}]"]
    cmd += ["actor_rollout_ref.rollout.calculate_log_probs=False", "eval.backend=hf", f"eval.out_dir={out}"]
    return run_logged(cmd, out / "eval.log")


def provenance(path: Path) -> None:
    """The code a run used: the commit and any uncommitted change to the library or recipe (a shared tree)."""
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout
    diff = subprocess.run(["git", "diff", "HEAD", "--", "verl_ext", "recipe"], cwd=REPO, capture_output=True, text=True)
    path.write_text(f"commit {head.strip()}\n{diff.stdout}")


def train(model: Path, data: dict[str, Path], variant: str, seed: int, cfg: dict[str, Any], run: Path) -> float:
    """``cfg['steps']`` steps of the recipe from ``model`` (the overrides of examples/run_tiny_cpu.sh); wall time."""
    batch, n = cfg["batch"], cfg["n"]
    provenance(run / "provenance.txt")
    cmd = [sys.executable, "-m", "recipe.ground_r1.main_ground_r1", *VARIANTS[variant], *common(model)]
    cmd += [
        f"data.train_files={data['train']}",
        f"data.val_files={data['test']}",
        f"data.train_batch_size={batch}",
        f"data.seed={seed}",
        "data.image_key=images",
        "data.dataloader_num_workers=0",
        "+actor_rollout_ref.model.override_config.attn_implementation=sdpa",
        "actor_rollout_ref.model.use_remove_padding=False",
        "actor_rollout_ref.model.enable_gradient_checkpointing=False",
        "actor_rollout_ref.actor.strategy=fsdp2",
        "actor_rollout_ref.ref.strategy=fsdp2",
        f"actor_rollout_ref.actor.ppo_mini_batch_size={batch}",
        f"actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu={batch * n}",
        f"actor_rollout_ref.actor.data_loader_seed={seed}",
        "actor_rollout_ref.actor.use_kl_loss=False",
        "actor_rollout_ref.actor.optim.lr=1e-3",
        "actor_rollout_ref.actor.checkpoint.save_contents=[model,hf_model]",
        "actor_rollout_ref.rollout.name=hf",
        f"actor_rollout_ref.rollout.n={n}",
        f"actor_rollout_ref.rollout.seed={seed}",
        "actor_rollout_ref.rollout.tensor_model_parallel_size=1",
        f"actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu={batch * n}",
        "reward.num_workers=1",
        f"ground_r1.advantage_dump_dir={run / 'advantages'}",
        "transfer_queue.backend.SimpleStorage.num_data_storage_units=1",
        "trainer.device=cpu",
        "trainer.n_gpus_per_node=1",
        "trainer.nnodes=1",
        f"trainer.total_training_steps={cfg['steps']}",
        f"trainer.save_freq={cfg['steps']}",
        "trainer.val_before_train=False",
        "trainer.test_freq=-1",
        "trainer.logger=[console,file]",
        "trainer.project_name=ground_r1_e2e",
        f"trainer.experiment_name={variant}_seed{seed}",
        f"trainer.default_local_dir={run / 'ckpt'}",
        "ray_kwargs.ray_init.num_cpus=32",
        "+ray_kwargs.ray_init.num_gpus=1",
    ]
    return run_logged(cmd, run / "train.log", {"VERL_FILE_LOGGER_PATH": str(run / "metrics.jsonl")})


def experiment(out: Path, cfg: dict[str, Any]) -> None:
    """Stages 1-4; wall times go to ``out/timings.json`` as each finishes."""
    timings_file = out / "timings.json"
    timings = json.loads(timings_file.read_text()) if timings_file.exists() else {}

    def record(name: str, seconds: float) -> None:
        timings[name] = round(seconds, 1)
        timings_file.write_text(json.dumps(timings, indent=1))

    from verl_ext.testing import scale_task

    data = {split: out / "data" / f"{split}.parquet" for split in ("train", "test")}
    if not all(p.exists() for p in data.values()):
        scale_task.write(out / "data", cfg["train"], cfg["test"], seed=0)
    model = out / "model"
    if not (model / "model.safetensors").exists():
        cmd = [sys.executable, "-m", "verl_ext.testing.scale_task", "policy", f"--data={data['train']}"]
        record("warm_start", run_logged([*cmd, f"--out={model}", f"--steps={cfg['policy_steps']}"], out / "policy.log"))
    if not (out / "eval_before" / "summary.json").exists():
        record("eval_before", evaluate(model, data["test"], out / "eval_before"))
    # SRPO and GRPO on every seed first, then the ablations: a run cut short still has the main comparison.
    order = [v for v in cfg["variants"] if v in ("srpo", "grpo")] + [
        v for v in cfg["variants"] if v not in ("srpo", "grpo")
    ]
    pairs = [(v, s) for group in (order[:2], order[2:]) for s in cfg["seeds"] for v in group]
    failed: list[str] = []
    for variant, seed in pairs:
        run = out / "runs" / variant / f"seed{seed}"
        if (run / "eval" / "summary.json").exists():
            continue
        if run.exists():
            shutil.rmtree(run)
        run.mkdir(parents=True)
        try:
            record(f"train/{variant}/seed{seed}", train(model, data, variant, seed, cfg, run))
            final = run / "ckpt" / f"global_step_{cfg['steps']}" / "actor" / "huggingface"
            record(f"eval/{variant}/seed{seed}", evaluate(final, data["test"], run / "eval"))
        except StageFailed as e:  # one broken run must not cost the others; a rerun retries it
            print(e, flush=True)
            failed.append(f"{variant}/seed{seed}")
            continue
        shutil.rmtree(run / "ckpt")  # the evaluation is what is kept; checkpoints are rebuilt by rerunning
    if failed:
        raise SystemExit(f"[e2e] runs that failed (rerun the same command to retry them): {', '.join(failed)}")


def _mean_sd(values: list[float]) -> str:
    if not values:
        return "n/a"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {sd:.3f}"


def _bins(summary: dict[str, float], what: str) -> dict[str, float]:
    prefix = f"{SOURCE}/scale/"
    return {k[len(prefix) : -len(what) - 1]: v for k, v in summary.items() if k.startswith(prefix) and k.endswith(what)}


def training_view(run: Path) -> dict[str, Any]:
    """From the trainer's per-trajectory dumps: accuracy, zooms and scale-bin shares over the first and last
    ``WINDOW`` steps, and each bin's mean advantage over all steps (GRPO's bias shows as a negative small bin)."""
    import numpy as np

    from verl_ext.algorithms.srpo import scale_bins

    steps = [_jsonl(f) for f in sorted((run / "advantages").glob("step_*.jsonl"))]

    def window(rows_by_step: list[list[dict]]) -> dict[str, Any]:
        rows = [r for step in rows_by_step for r in step]
        bins = np.asarray(scale_bins(np.array([r["evidence_scale"] for r in rows]), NUM_BINS, None))
        return {
            "acc": statistics.mean(r["acc"] for r in rows),
            "zooms": statistics.mean(r["num_zooms"] for r in rows),
            "bin_share": [float((bins == k).mean()) for k in range(NUM_BINS)],
        }

    rows = [r for step in steps for r in step]
    bins = np.asarray(scale_bins(np.array([r["evidence_scale"] for r in rows]), NUM_BINS, None))
    advantages = np.array([r["advantage"] for r in rows])
    return {
        "first": window(steps[:WINDOW]),
        "last": window(steps[-WINDOW:]),
        "bin_adv_mean": [float(advantages[bins == k].mean()) if (bins == k).any() else None for k in range(NUM_BINS)],
    }


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def collect(out: Path) -> dict[str, Any]:
    """Every finished run's numbers: held-out evaluation before/after, and training reward per step."""
    before = json.loads((out / "eval_before" / "summary.json").read_text())
    runs: dict[str, dict[str, Any]] = {}
    for summary_file in sorted((out / "runs").glob("*/seed*/eval/summary.json")):
        run = summary_file.parents[1]
        steps = read_steps(run / "metrics.jsonl")
        scores = [steps[s]["critic/score/mean"] for s in sorted(steps)]
        after = json.loads(summary_file.read_text())
        runs[f"{run.parent.name}/{run.name}"] = {
            "variant": run.parent.name,
            "seed": int(run.name[len("seed") :]),
            "steps": len(scores),
            "reward_first": statistics.mean(scores[:WINDOW]),
            "reward_last": statistics.mean(scores[-WINDOW:]),
            "acc": after[f"{SOURCE}/acc"],
            "zooms_per_question": after[f"{SOURCE}/zooms_per_question"],
            "bin_share": _bins(after, "share"),
            "bin_acc": _bins(after, "acc"),
            "train": training_view(run),
        }
    timings = json.loads((out / "timings.json").read_text()) if (out / "timings.json").exists() else {}
    return {
        "before": {
            "acc": before[f"{SOURCE}/acc"],
            "n": before[f"{SOURCE}/n"],
            "zooms_per_question": before[f"{SOURCE}/zooms_per_question"],
            "bin_share": _bins(before, "share"),
            "bin_acc": _bins(before, "acc"),
        },
        "runs": runs,
        "timings_s": timings,
    }


def table(results: dict[str, Any]) -> str:
    """The markdown tables: per variant (mean ± sd over seeds) and per run."""
    before, runs = results["before"], results["runs"]
    variants = [v for v in VARIANTS if any(r["variant"] == v for r in runs.values())]
    lines = [
        f"Held-out split: {int(before['n'])} questions, greedy. Before training (warm start): accuracy "
        f"{before['acc']:.3f}, zooms per question {before['zooms_per_question']:.2f}, scale-bin shares "
        + ", ".join(f"{b} {v:.2f}" for b, v in sorted(before["bin_share"].items()))
        + ".",
        "",
        f"| variant | seeds | train reward, first {WINDOW} steps | last {WINDOW} steps | held-out acc after "
        "| zooms / question | bin shares after (mean) |",
        "|---|---|---|---|---|---|---|",
    ]
    for v in variants:
        rs = [r for r in runs.values() if r["variant"] == v]
        shares = {b: statistics.mean(r["bin_share"].get(b, 0.0) for r in rs) for b in sorted(rs[0]["bin_share"])}
        lines.append(
            f"| {v} | {len(rs)} | {_mean_sd([r['reward_first'] for r in rs])} | "
            f"{_mean_sd([r['reward_last'] for r in rs])} | {_mean_sd([r['acc'] for r in rs])} | "
            f"{_mean_sd([r['zooms_per_question'] for r in rs])} | "
            + ", ".join(f"{b} {s:.2f}" for b, s in shares.items())
            + " |"
        )
    lines += [
        "",
        f"| run | steps | reward first {WINDOW} | reward last {WINDOW} | held-out acc | zooms / q | per-bin share "
        "| per-bin acc |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in runs.items():
        lines.append(
            f"| {name} | {r['steps']} | {r['reward_first']:.3f} | {r['reward_last']:.3f} | {r['acc']:.3f} | "
            f"{r['zooms_per_question']:.2f} | "
            + ", ".join(f"{b} {s:.2f}" for b, s in sorted(r["bin_share"].items()))
            + " | "
            + ", ".join(f"{b} {a:.2f}" for b, a in sorted(r["bin_acc"].items()))
            + " |"
        )
    lines += [
        "",
        f"Training rollouts (per-trajectory dumps), first {WINDOW} -> last {WINDOW} steps; mean advantage per scale "
        "bin over all steps:",
        "",
        "| run | train acc | zooms / trajectory | bin0 share | bin1 share | bin2 share | mean adv bin0 / bin1 / bin2 |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in runs.items():
        first, last = r["train"]["first"], r["train"]["last"]
        shares = " | ".join(f"{a:.2f} -> {b:.2f}" for a, b in zip(first["bin_share"], last["bin_share"], strict=True))
        adv = " / ".join("n/a" if a is None else f"{a:+.3f}" for a in r["train"]["bin_adv_mean"])
        lines.append(
            f"| {name} | {first['acc']:.3f} -> {last['acc']:.3f} | {first['zooms']:.2f} -> {last['zooms']:.2f} | "
            f"{shares} | {adv} |"
        )
    return "\n".join(lines) + "\n"


def report(out: Path) -> None:
    """``out/report``: table.md, results.json and the plots of every finished run."""
    results = collect(out)
    target = out / "report"
    target.mkdir(exist_ok=True)
    (target / "results.json").write_text(json.dumps(results, indent=1))
    (target / "table.md").write_text(table(results))
    print(table(results), flush=True)
    plots(out, target)


def plots(out: Path, target: Path) -> list[Path]:
    """Reward and per-scale-bin curves over training (:mod:`verl_ext.plots`): seeds of a variant as mean and band."""
    from verl_ext.plots import plot_runs

    runs = [(f, f.parent.parent.name) for f in sorted((out / "runs").glob("*/seed*/metrics.jsonl"))]
    return plot_runs(runs, target, ["critic/score/mean", "scale/*"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="folder for data, model, runs and the report")
    parser.add_argument("--quick", action="store_true", help="a few minutes: 2 steps, 1 seed, srpo and grpo")
    parser.add_argument("--report", action="store_true", help="only rebuild the report from finished runs")
    parser.add_argument("--steps", type=int, help="training steps per run (default: 100, --quick 2)")
    parser.add_argument("--seeds", type=int, nargs="+", help="seeds (default: 0 1 2, --quick 0)")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), help="estimator variants (default: all)")
    args = parser.parse_args()
    cfg = settings(args.quick)
    for key in ("steps", "seeds", "variants"):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    if not args.report:
        (args.out / "settings.json").write_text(json.dumps(cfg, indent=1))
        experiment(args.out, cfg)
    report(args.out)
    print(f"[e2e] done in {time.monotonic() - start:.0f} s; report in {args.out / 'report'}", flush=True)


if __name__ == "__main__":
    main()
