"""SRPO's advantages against docs/design.md section 3, veRL's GRPO, and veRL's compute_advantage dispatch."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf
from verl import DataProto
from verl.trainer.ppo.core_algos import compute_grpo_outcome_advantage
from verl.trainer.ppo.ray_trainer import compute_advantage

from verl_ext.algorithms.routing import routed_evidence_scales
from verl_ext.algorithms.srpo import SRPOConfig, SRPOConfigError, compute_srpo_outcome_advantage

EPS = 1e-6


def outcome(rewards: list[float], length: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Token-level rewards with the outcome on the last token, and a full response mask."""
    tl = torch.zeros(len(rewards), length)
    tl[:, -1] = torch.tensor(rewards)
    return tl, torch.ones(len(rewards), length)


def srpo(rewards, scales, index=None, **options) -> torch.Tensor:
    tl, mask = outcome(rewards)
    index = np.array(index if index is not None else ["g"] * len(rewards), dtype=object)
    config = OmegaConf.create({"srpo": options}) if options else None
    adv, ret = compute_srpo_outcome_advantage(tl, mask, index, evidence_scale=scales, config=config)
    assert torch.equal(adv, ret)
    assert torch.equal(adv, adv[:, :1] * mask)  # broadcast over the response tokens
    return adv[:, 0]


def unbiased_std(xs: list[float]) -> float:
    m = sum(xs) / len(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def test_mixed_bins_with_a_tie_and_singletons():
    # bins (K=3): 0.1, 0.2 -> 0; 0.5 -> 1; 0.9 -> 2. Bin means 0.5, 1, 1: bins 1 and 2 tie for best.
    adv = srpo([1.0, 0.0, 1.0, 1.0], [0.1, 0.2, 0.5, 0.9])
    s = unbiased_std([1.0, 0.0])
    intra = [0.5 / (s + EPS), -0.5 / (s + EPS), 0.0, 0.0]  # singleton bins get 0
    r_inter = [0.0, 0.0, 1.0, 1.0]
    si = unbiased_std(r_inter)
    inter = [(r - 0.5) / (si + EPS) for r in r_inter]
    torch.testing.assert_close(adv, torch.tensor([a + b for a, b in zip(intra, inter, strict=True)]))


def test_inter_bin_term_rewards_the_best_bin_even_with_zero_intra_variance():
    # Small boxes all right, large boxes all wrong: GRPO would still split by reward; SRPO's intra term is 0
    # (no variance inside a bin) and the inter term carries the whole signal.
    adv = srpo([1.0, 1.0, 0.0, 0.0], [0.05, 0.1, 0.8, 0.9])
    si = unbiased_std([1.0, 1.0, 0.0, 0.0])
    torch.testing.assert_close(adv, torch.tensor([0.5, 0.5, -0.5, -0.5]) / (si + EPS))


@pytest.mark.parametrize(
    "rewards,scales",
    [
        ([0.7, 0.7, 0.7, 0.7], [0.1, 0.5, 0.9, 0.95]),  # all-equal rewards across bins
        ([1.0, 1.0, 1.0], [0.2, 0.2, 0.2]),  # zero variance in one bin
        ([1.0], [0.3]),  # singleton group
    ],
)
def test_degenerate_groups_get_zero_advantage(rewards, scales):
    torch.testing.assert_close(srpo(rewards, scales), torch.zeros(len(rewards)))


def test_groups_are_independent_and_interleaved_rows_are_fine():
    a = srpo([1.0, 0.0, 0.0, 1.0], [0.1, 0.1, 0.9, 0.9], index=["x", "y", "x", "y"])
    x = srpo([1.0, 0.0], [0.1, 0.9])
    y = srpo([0.0, 1.0], [0.1, 0.9])
    torch.testing.assert_close(a, torch.stack([x[0], y[0], x[1], y[1]]))


def test_bin_edges_put_a_scale_on_an_edge_in_the_upper_bin():
    # edges [0.1, 0.3]: 0.05 -> 0, 0.1 -> 1, 0.2 -> 1, 0.3 -> 2
    adv = srpo([1.0, 0.0, 1.0, 0.0], [0.05, 0.1, 0.2, 0.3], num_bins=3, bin_edges=[0.1, 0.3])
    s = unbiased_std([0.0, 1.0])
    intra = [0.0, -0.5 / (s + EPS), 0.5 / (s + EPS), 0.0]
    r_inter = [1.0, 0.0, 0.0, 0.0]  # bin means 1, 0.5, 0
    si = unbiased_std(r_inter)
    inter = [(r - 0.25) / (si + EPS) for r in r_inter]
    torch.testing.assert_close(adv, torch.tensor([a + b for a, b in zip(intra, inter, strict=True)]))


def test_weights_give_the_papers_ablations_and_unnormalised_mode():
    rewards, scales = [1.0, 0.0, 1.0, 1.0], [0.1, 0.2, 0.5, 0.9]
    full = srpo(rewards, scales)
    intra_only = srpo(rewards, scales, w_inter=0.0)
    inter_only = srpo(rewards, scales, w_intra=0.0)
    torch.testing.assert_close(intra_only + inter_only, full)
    assert intra_only[2] == 0 and intra_only[3] == 0
    # Unnormalised: intra = r - bin mean = [0.5, -0.5, 0, 0]; inter = r_inter - 0.5 = [-0.5, -0.5, 0.5, 0.5].
    torch.testing.assert_close(srpo(rewards, scales, norm_adv_by_std=False), torch.tensor([0.0, -1.0, 0.5, 0.5]))


def reference_srpo(rewards: list[float], scales: list[float], index: list[int], k: int) -> list[float]:
    """docs/design.md section 3 written as plain per-group loops: an oracle for the vectorised version."""
    out = [0.0] * len(rewards)
    for g in set(index):
        rows = [i for i in range(len(rewards)) if index[i] == g]
        bins = {i: min(math.floor(k * scales[i]), k - 1) for i in rows}
        members = {b: [i for i in rows if bins[i] == b] for b in set(bins.values())}
        means = {b: sum(rewards[i] for i in m) / len(m) for b, m in members.items()}
        best = max(means.values())
        r_inter = {i: 1.0 if means[bins[i]] >= best - 1e-9 else 0.0 for i in rows}
        for i in rows:
            m = members[bins[i]]
            intra = 0.0
            if len(m) > 1:
                intra = (rewards[i] - means[bins[i]]) / (unbiased_std([rewards[j] for j in m]) + EPS)
            inter = 0.0
            if len(rows) > 1:
                vals = list(r_inter.values())
                inter = (r_inter[i] - sum(vals) / len(vals)) / (unbiased_std(vals) + EPS)
            out[i] = intra + inter
    return out


group_batches = st.integers(1, 6).flatmap(
    lambda n: st.tuples(
        st.lists(st.sampled_from([0.0, 0.5, 1.0, 1.5]), min_size=n, max_size=n),
        st.lists(st.floats(0.0, 1.0), min_size=n, max_size=n),
        st.lists(st.integers(0, 2), min_size=n, max_size=n),
        st.integers(1, 5),
    )
)


@settings(max_examples=200, deadline=None)
@given(group_batches)
def test_vectorised_estimator_matches_the_per_group_definition(batch):
    rewards, scales, index, k = batch
    adv = srpo(rewards, scales, index=index, num_bins=k)
    assert torch.isfinite(adv).all()
    torch.testing.assert_close(adv, torch.tensor(reference_srpo(rewards, scales, index, k)), atol=1e-4, rtol=1e-4)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.floats(-5, 5, allow_nan=False), min_size=1, max_size=10),
    st.integers(0, 2),
    st.integers(1, 4),
)
def test_one_bin_groups_equal_verls_own_grpo_except_a_lone_trajectory(rewards, bin_index, k):
    bin_index = min(bin_index, k - 1)
    scales = [(bin_index + 0.5) / k] * len(rewards)
    tl, mask = outcome(rewards)
    index = np.array(["g"] * len(rewards), dtype=object)
    grpo, _ = compute_grpo_outcome_advantage(tl, mask, index)
    ours, _ = compute_srpo_outcome_advantage(tl, mask, index, evidence_scale=scales, config={"srpo": {"num_bins": k}})
    if len(rewards) > 1:
        torch.testing.assert_close(ours, grpo)
    else:
        # The documented difference: veRL's GRPO gives a lone trajectory r / (1 + eps); SRPO has nothing to compare.
        torch.testing.assert_close(grpo[0, 0], torch.tensor(rewards[0] / (1 + 1e-6)))
        assert float(ours.abs().max()) == 0.0


def test_an_index_of_the_wrong_length_is_a_clear_error():
    tl, mask = outcome([1.0, 0.0, 1.0])
    with pytest.raises(SRPOConfigError, match="index \\(uid\\) has 2 entries for a batch of 3"):
        compute_srpo_outcome_advantage(tl, mask, np.array(["a", "a"], dtype=object), evidence_scale=[0.1, 0.2, 0.3])


@pytest.mark.parametrize(
    "rewards,scales,match",
    [
        ([1.0, float("nan")], [0.1, 0.2], "non-finite rewards at rows \\[1\\]"),
        ([1.0, float("inf")], [0.1, 0.2], "non-finite rewards"),
        ([1.0, 0.0], [0.1, 1.5], "evidence scales must lie in \\[0, 1\\]; rows \\[1\\]"),
        ([1.0, 0.0], [-0.1, 0.5], "rows \\[0\\]"),
        ([1.0, 0.0], [0.1, float("nan")], "must lie in \\[0, 1\\]"),
    ],
)
def test_bad_inputs_are_clear_errors(rewards, scales, match):
    with pytest.raises(SRPOConfigError, match=match):
        srpo(rewards, scales)


@pytest.mark.parametrize(
    "options,match",
    [
        ({"num_bins": 0}, "num_bins must be an integer >= 1"),
        ({"num_bins": 3, "bin_edges": [0.3, 0.1]}, "strictly increasing"),
        ({"num_bins": 3, "bin_edges": [0.0, 0.5]}, "strictly inside \\(0, 1\\)"),
        ({"num_bins": 3, "bin_edges": [0.5, 1.2]}, "strictly inside \\(0, 1\\)"),
        ({"num_bins": 3, "bin_edges": [0.5]}, "num_bins - 1 = 2 interior edges"),
        ({"w_inter": -1.0}, "w_inter must be a finite number >= 0"),
        ({"num_binz": 3}, "Key 'num_binz' not in 'SRPOConfig'"),
        ({"w_intra": "heavy"}, "invalid algorithm.srpo.w_intra: Value 'heavy'"),
        ({"num_bins": 2.5}, "invalid algorithm.srpo.num_bins"),
        ({"epsilon": 0.0}, "epsilon must be > 0 with norm_adv_by_std"),
        ({"w_intra": 0.0, "w_inter": 0.0}, "both 0"),
    ],
)
def test_bad_options_are_clear_errors(options, match):
    with pytest.raises(SRPOConfigError, match=match):
        SRPOConfig.from_algorithm_config(OmegaConf.create({"srpo": options}))


def test_without_scales_it_refuses_and_says_how_to_launch():
    tl, mask = outcome([1.0, 0.0])
    with pytest.raises(SRPOConfigError, match="main_ground_r1.*algorithm.adv_estimator=grpo"):
        compute_srpo_outcome_advantage(tl, mask, np.array(["a", "a"], dtype=object))


def _data(rewards: list[float], uids: list[str]) -> DataProto:
    tl, mask = outcome(rewards)
    return DataProto.from_dict(
        tensors={"token_level_rewards": tl, "response_mask": mask},
        non_tensors={"uid": np.array(uids, dtype=object)},
    )


def test_verls_compute_advantage_dispatches_srpo_through_the_registry():
    rewards, scales, uids = [1.0, 0.0, 1.0, 0.0, 1.0], [0.1, 0.1, 0.9, 0.9, 0.5], ["a", "a", "a", "a", "b"]
    config = OmegaConf.create({"srpo": {"num_bins": 3}})
    with pytest.raises(SRPOConfigError, match="evidence scale"):
        compute_advantage(_data(rewards, uids), adv_estimator="srpo", config=config)
    with routed_evidence_scales(scales):
        data = compute_advantage(_data(rewards, uids), adv_estimator="srpo", config=config)
    expected = srpo(rewards, scales, index=uids)
    torch.testing.assert_close(data.batch["advantages"][:, 0], expected)


def test_routed_sessions_score_the_final_output_and_broadcast_it():
    # Session s1 returned two outputs (index 0 and 1): only output 1 is scored, output 0 shares its advantage.
    keys = ["u1_s1_1", "u1_s2_0", "u1_s1_0", "u1_s3_0"]
    rewards = [1.0, 0.0, 123.0, 1.0]  # the non-final output's own reward must not matter
    scales = [0.1, 0.1, 0.9, 0.9]
    tl, mask = outcome(rewards)
    with routed_evidence_scales(scales, keys=keys):
        adv, _ = compute_srpo_outcome_advantage(tl, mask, np.array(["u1"] * 4, dtype=object), config=None)
    final = srpo([1.0, 0.0, 1.0], [0.1, 0.1, 0.9])
    torch.testing.assert_close(adv[:, 0], torch.stack([final[0], final[1], final[0], final[2]]))
