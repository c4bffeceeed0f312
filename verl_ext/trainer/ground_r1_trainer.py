"""veRL v1 sync trainer with evidence-scale routing for SRPO, per-scale-bin diagnostics and the harness's metrics.

Registered with veRL's ``register_trainer`` as ``ground_r1_sync`` (the recipe config selects it through
``trainer.v1.trainer_mode``). It is veRL's ``PPOTrainerSync`` with two steps extended:

- the advantage step reads each trajectory's ``evidence_scale`` from its reward extra info
  (``extra_fields.reward_extra_info`` in TransferQueue, in the batch's key order), hands them to the SRPO
  estimator for the duration of veRL's own ``_compute_advantage``, and logs ``scale/*`` metrics from the
  advantages it wrote back, the LLM judge's ``judge/*`` (veRL logs reward extra info only in validation) and
  the branching rollout's ``branch/*``;
- validation adds the evaluation harness's own metrics (:func:`verl_ext.eval.metrics.validation_metrics`: HR-Bench
  cycle averaging, RefCOCO Acc@0.5, zoom statistics), so ``val-core/...`` during training carries the numbers
  ``python -m recipe.ground_r1.main_eval`` reports.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
import transfer_queue as tq
from verl.trainer.ppo.v1 import PPOTrainerSync, register_trainer

from verl_ext.algorithms.routing import parse_key, routed_evidence_scales
from verl_ext.algorithms.srpo import LAUNCH_HINT, SRPOConfig, SRPOConfigError
from verl_ext.eval.metrics import records_from_validation, rows_by_uid, validation_metrics
from verl_ext.reward.judge import judge_step_metrics
from verl_ext.reward_keys import ACC, EVIDENCE_SCALE, NUM_ZOOMS
from verl_ext.tools.branching import branch_metrics
from verl_ext.trainer import TRAINER_MODE
from verl_ext.trainer.diagnostics import scale_bin_metrics


def reward_extra_infos(extra_fields: Any) -> list[dict]:
    """Each row's ``reward_extra_info`` dict from a TransferQueue ``extra_fields`` column."""
    rows = extra_fields.tolist() if hasattr(extra_fields, "tolist") else list(extra_fields)
    infos = []
    for row in rows:
        row = getattr(row, "data", row)
        info = row.get("reward_extra_info") if isinstance(row, dict) else None
        infos.append(info if isinstance(info, dict) else {})
    return infos


def _as_float(value: Any) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def evidence_scales_from_infos(infos: list[dict], required: bool) -> torch.Tensor | None:
    """Per-row evidence scales from the reward extra info, or None when some row has no finite value.

    The reward writes a scale for every row (``evidence_missing`` for a trajectory without a valid zoom), so a
    missing value means the reward function is not the recipe's: when ``required`` (SRPO is running) that is an
    error naming the rows, never a silent default.
    """
    values = [_as_float(info.get(EVIDENCE_SCALE)) for info in infos]
    bad = [i for i, v in enumerate(values) if v is None]
    if not bad:
        return torch.tensor(values, dtype=torch.float64)
    if required:
        raise SRPOConfigError(
            f"rows {bad[:8]} of this batch have no finite '{EVIDENCE_SCALE}' in their reward extra info "
            f"(of {len(values)}). " + LAUNCH_HINT
        )
    return None


def accuracies_from_infos(infos: list[dict]) -> torch.Tensor | None:
    """Per-row ``acc`` when the reward reports it for every row."""
    values = [_as_float(info.get(ACC)) for info in infos]
    if not values or any(v is None for v in values):
        return None
    return torch.tensor(values, dtype=torch.float64)


def per_row_mean(nested: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over each row's valid response tokens of a nested (jagged) per-token tensor."""
    values = nested.to_padded_tensor(0.0).to(torch.float64)
    weights = mask.to_padded_tensor(0).to(torch.float64)
    return (values * weights).sum(-1) / weights.sum(-1).clamp_min(1.0)


def dump_step(
    path: Path,
    keys: list[str],
    rewards: torch.Tensor,
    scales: torch.Tensor,
    advantages: torch.Tensor,
    infos: list[dict],
) -> None:
    """One JSON line per trajectory: what the advantage step saw and what it wrote (for analysis and tests)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w") as f:
        for i, key in enumerate(keys):
            row = {
                "key": key,
                "uid": parse_key(key)[0],
                "reward": float(rewards[i]),
                EVIDENCE_SCALE: float(scales[i]),
                "advantage": float(advantages[i]),
                ACC: _as_float(infos[i].get(ACC)),
                NUM_ZOOMS: _as_float(infos[i].get(NUM_ZOOMS)),
            }
            f.write(json.dumps(row) + "\n")
    tmp.replace(path)


class ValidationRows:
    """A dataloader that records each question's row fields by prompt uid, one batch at a time.

    veRL's ``_validate`` writes a ``uid`` column into each batch dict after taking it from the loader; the fields
    are read when the next batch is asked for, so only the small per-question fields are kept (not the batches
    with their images).
    """

    def __init__(self, loader: Any) -> None:
        self.loader = loader
        self.rows: dict[str, dict] = {}

    def __iter__(self):
        for batch in self.loader:
            yield batch
            self.rows.update(rows_by_uid([batch]))

    def __len__(self) -> int:
        return len(self.loader)


@register_trainer(TRAINER_MODE)
class GroundR1TrainerSync(PPOTrainerSync):
    """``PPOTrainerSync`` whose advantage step routes evidence scales and logs per-scale-bin metrics."""

    def _compute_advantage(self, batch, metrics: dict) -> Any:
        algorithm = self.config.algorithm
        srpo_cfg = SRPOConfig.from_algorithm_config(algorithm)
        is_srpo = str(algorithm.adv_estimator) == "srpo"

        fields = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=["extra_fields"])
        infos = reward_extra_infos(fields["extra_fields"])
        scales = evidence_scales_from_infos(infos, required=is_srpo)
        metrics.update(judge_step_metrics(infos))
        metrics.update(branch_metrics(fields["extra_fields"]))

        if is_srpo:
            with routed_evidence_scales(scales, keys=batch.keys):
                batch = super()._compute_advantage(batch, metrics)
        else:
            batch = super()._compute_advantage(batch, metrics)

        out = tq.kv_batch_get(
            keys=batch.keys,
            partition_id=batch.partition_id,
            select_fields=["advantages", "rm_scores", "response_mask"],
        )
        rewards = out["rm_scores"].to_padded_tensor(0.0).to(torch.float64).sum(-1)
        advantages = per_row_mean(out["advantages"], out["response_mask"])
        if scales is None:  # a reward without evidence scales (possible under GRPO): no per-bin view to give
            return batch
        metrics.update(
            scale_bin_metrics(
                scales, rewards, advantages, accuracies_from_infos(infos), srpo_cfg.num_bins, srpo_cfg.bin_edges
            )
        )
        dump_dir = (self.config.get("ground_r1") or {}).get("advantage_dump_dir")
        if dump_dir:
            step = getattr(self, "global_steps", 0)
            dump_step(Path(dump_dir) / f"step_{step:06d}.jsonl", list(batch.keys), rewards, scales, advantages, infos)
        return batch

    def _validate(self) -> dict[str, float]:
        """veRL's validation, recording each question's row fields so the harness's metrics can group them."""
        loader = self.val_dataloader
        self._val_rows = self.val_dataloader = ValidationRows(loader)
        try:
            return super()._validate()
        finally:
            self.val_dataloader = loader

    def _val_metrics_update(
        self, data_sources, sample_uids, reward_extra_infos_dict, sample_turns, expected_acc_counts=None
    ) -> dict[str, float]:
        """veRL's ``val-core``/``val-aux`` metrics plus the evaluation harness's, computed by the same functions."""
        metrics = super()._val_metrics_update(
            data_sources, sample_uids, reward_extra_infos_dict, sample_turns, expected_acc_counts=expected_acc_counts
        )
        recorded = getattr(self, "_val_rows", None)
        rows = recorded.rows if recorded is not None else None
        records = records_from_validation(data_sources, sample_uids, reward_extra_infos_dict, rows)
        cfg = SRPOConfig.from_algorithm_config(self.config.algorithm)
        metrics.update(validation_metrics(records, cfg.num_bins, cfg.bin_edges))
        return metrics
