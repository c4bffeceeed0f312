"""compute_score end to end: keys, composition, evidence scale, configuration errors, registry, loading by verl."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf
from verl.trainer.ppo.reward import get_custom_reward_fn
from verl.utils.import_utils import load_extern_object

import verl_ext.reward
from verl_ext import data_sources
from verl_ext.evidence import ZOOM_RECORDS_KEY
from verl_ext.reward import (
    REWARD_KEYS,
    AnswerScore,
    UnknownDataSourceError,
    compute_score,
    known_data_sources,
    register_data_source,
)

ENTRY_FILE = Path(verl_ext.reward.__file__).with_name("entry.py")
ZOOM = "<think>The text is tiny.</think>\n<box>[10, 10, 200, 120]</box>"
TOOL_TURN = "\nuser\n<tool_response>\nZoomed in.\n</tool_response>\nassistant\n"
GOOD_MC = ZOOM + TOOL_TURN + "<think>Blue.</think><answer>B</answer>"
RECORDS = [
    {"bbox_model": None, "bbox_original": None, "relative_area": None, "valid": False, "reason": "no box"},
    {
        "bbox_model": [10, 10, 200, 120],
        "bbox_original": [20, 20, 400, 240],
        "relative_area": 0.25,
        "valid": True,
        "reason": "",
    },
    {
        "bbox_model": [0, 0, 50, 50],
        "bbox_original": [0, 0, 100, 100],
        "relative_area": 0.04,
        "valid": True,
        "reason": "",
    },
]
MC_INFO = {"options": ["red", "blue", "green", "yellow"], ZOOM_RECORDS_KEY: RECORDS, "num_turns": 4}
NO_JUDGE = {
    "judge_called": 0.0,
    "judge_failed": 0.0,
    "judge_agree": -1.0,
    "judge_latency_s": 0.0,
    "judge_error": 0.0,
    "judge_circuit_opens": 0.0,
}
GROUNDING_INFO = {"image_width": 640, "image_height": 480, "resized_width": 640, "resized_height": 480}


def test_every_source_returns_the_same_float_keys():
    rows = [
        ("refcoco", "<think>x</think><answer>[0, 0, 10, 10]</answer>", [0, 0, 10, 10], GROUNDING_INFO),
        ("refcoco+", "garbage", [0, 0, 10, 10], GROUNDING_INFO),
        ("refcocog", "", [0, 0, 10, 10], None),
        ("hr_bench_4k", GOOD_MC, "B", MC_INFO),
        ("hr_bench_8k", "B", "B", {}),
        ("vstar", GOOD_MC, "A", MC_INFO),
        ("visual_cot", "<think>x</think><answer>a red bus</answer>", "the red bus", {}),
        (data_sources.deepeyes("chart"), "<answer>3</answer>", "3", {}),
    ]
    for source, text, truth, info in rows:
        result = compute_score(source, text, truth, info)
        assert tuple(result) == REWARD_KEYS, source
        assert all(type(v) is float for v in result.values()), source


def test_composition_weights_and_defaults():
    right = compute_score("vstar", GOOD_MC, "B", MC_INFO)
    assert right == {
        "score": 1.0,
        "acc": 1.0,
        "format": 1.0,
        "iou": -1.0,
        "evidence_scale": 0.25,
        "num_zooms": 3.0,
        **NO_JUDGE,
    }
    unformatted = compute_score("vstar", "<answer>B</answer>", "B", MC_INFO)
    assert (unformatted["score"], unformatted["format"], unformatted["acc"]) == (0.9, 0.0, 1.0)
    wrong = compute_score("vstar", GOOD_MC, "C", MC_INFO)
    assert wrong["score"] == pytest.approx(0.1)
    weighted = compute_score("vstar", GOOD_MC, "B", MC_INFO, answer_weight=1.0, format_weight=0.5)
    assert weighted["score"] == 1.5


def test_grounding_score_mode_and_iou_key():
    text = '<think>The cup.</think><answer>{"bbox_2d": [0, 0, 100, 60]}</answer>'
    truth = [0, 0, 100, 100]  # IoU 0.6
    continuous = compute_score("refcoco", text, truth, GROUNDING_INFO, answer_weight=1.0, format_weight=0.0)
    indicator = compute_score("refcoco", text, truth, GROUNDING_INFO, grounding_mode="acc@0.5")
    assert continuous["score"] == pytest.approx(0.6) and continuous["iou"] == pytest.approx(0.6)
    assert indicator["score"] == pytest.approx(1.0) and indicator["acc"] == 1.0


def test_evidence_scale_options_and_tolerated_record_containers():
    last = compute_score("vstar", GOOD_MC, "B", MC_INFO, evidence_mode="last")
    assert last["evidence_scale"] == pytest.approx(0.04)
    as_numpy = {**MC_INFO, ZOOM_RECORDS_KEY: np.array(RECORDS, dtype=object)}
    assert compute_score("vstar", GOOD_MC, "B", as_numpy)["evidence_scale"] == pytest.approx(0.25)
    assert compute_score("vstar", GOOD_MC, "B", as_numpy)["num_zooms"] == 3.0
    never = compute_score("vstar", GOOD_MC, "B", {"options": MC_INFO["options"]})
    assert (never["evidence_scale"], never["num_zooms"]) == (1.0, 0.0)
    only_invalid = {ZOOM_RECORDS_KEY: RECORDS[:1]}
    missing = compute_score("vstar", GOOD_MC, "B", only_invalid, evidence_missing=0.5)
    assert (missing["evidence_scale"], missing["num_zooms"]) == (0.5, 1.0)
    for junk in ("abc", 7, {"valid": True}, [None, "x", 3]):
        result = compute_score("vstar", GOOD_MC, "B", {ZOOM_RECORDS_KEY: junk})
        assert (result["evidence_scale"], result["num_zooms"]) == (1.0, 0.0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"format_weigth": 0.1},
        {"grounding_mode": "iou@0.5"},
        {"evidence_mode": "largest"},
        {"evidence_missing": 2.0},
        {"answer_weight": float("nan")},
        {"format_weight": -1},
        {"max_pixels": 401408},
        {"judge": {"enable": "yes"}},
        {"math_timeout": "5"},
    ],
)
def test_bad_reward_kwargs_are_configuration_errors(kwargs):
    with pytest.raises(ValueError, match=re.escape(next(iter(kwargs)))):
        compute_score("vstar", GOOD_MC, "B", MC_INFO, **kwargs)


def test_verl_reward_manager_kwargs_are_accepted():
    result = compute_score("vstar", GOOD_MC, "B", MC_INFO, reward_router_address=None, reward_model_tokenizer=None)
    assert result["acc"] == 1.0


def test_unknown_data_source_lists_the_known_ones():
    with pytest.raises(UnknownDataSourceError) as err:
        compute_score("refcoco_typo", GOOD_MC, "B", MC_INFO)
    message = str(err.value)
    for name in ("refcoco", "refcoco+", "refcocog", "hr_bench_4k", "hr_bench_8k", "vstar", "visual_cot", "deepeyes_*"):
        assert repr(name) in message


@pytest.fixture
def scratch_registry(monkeypatch):
    """Registrations a test makes are undone afterwards."""
    from verl_ext.reward import registry

    monkeypatch.setattr(registry, "_EXACT", dict(registry._EXACT))
    monkeypatch.setattr(registry, "_PREFIX", dict(registry._PREFIX))


def test_data_prep_imports_the_source_table_without_the_reward():
    """Data prep imports the names; it must not pay for ROUGE, math_verify or the reward package."""
    code = (
        "import sys, verl_ext.data_sources as d; d.deepeyes('x'); "
        "print(sorted(m for m in ('rouge_score', 'math_verify', 'verl_ext.reward', 'verl') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_user_registers_a_data_source_without_touching_the_dispatcher(scratch_registry):
    def count_words(answer, ground_truth, extra_info, options):
        ok = answer is not None and len(answer.split()) == int(ground_truth)
        return AnswerScore(float(ok), float(ok))

    register_data_source("word_count_test", count_words)
    register_data_source("word_count_test", count_words)  # idempotent
    assert "word_count_test" in known_data_sources()
    assert compute_score("word_count_test", "<think>x</think><answer>one two</answer>", 2)["score"] == 1.0
    with pytest.raises(ValueError, match="already"):
        register_data_source("word_count_test", lambda *a: AnswerScore(0.0, 0.0))
    with pytest.raises(ValueError, match="already"):
        register_data_source("vstar", count_words)


def test_longest_prefix_wins(scratch_registry):
    def special(answer, ground_truth, extra_info, options):
        return AnswerScore(0.25, 0.0)

    register_data_source("deepeyes_special_test_", special, prefix=True)
    assert compute_score("deepeyes_special_test_v1", "<answer>B</answer>", "B")["score"] == pytest.approx(0.9 * 0.25)
    assert compute_score("deepeyes_other", "<answer>B</answer>", "B")["acc"] == 1.0


@pytest.mark.parametrize("path", ["pkg://verl_ext.reward", str(ENTRY_FILE), f"file://{ENTRY_FILE}"])
def test_verl_loads_the_same_function_by_package_or_by_file(path):
    """veRL runs a reward *file* under a fresh module name: it must still reach the one registry."""
    loaded = load_extern_object(path, "compute_score")
    assert loaded is compute_score


def test_verl_merges_reward_kwargs_from_the_config():
    config = OmegaConf.create(
        {
            "reward": {
                "custom_reward_function": {
                    "path": str(ENTRY_FILE),
                    "name": "compute_score",
                    "reward_kwargs": {"format_weight": 0.0, "answer_weight": 1.0, "evidence_mode": "last"},
                }
            }
        }
    )
    fn = get_custom_reward_fn(config)
    result = fn(data_source="vstar", solution_str="<answer>B</answer>", ground_truth="B", extra_info=MC_INFO)
    assert (result["score"], result["evidence_scale"]) == (1.0, pytest.approx(0.04))
