"""Evaluation: win rates with ties and intervals, failure rates, KL between policies, and the pipeline."""
import json
import math

import pytest
import torch

from rlhf_core import SimulatedLabeler, load_base
from rlhf_core.evaluate import judge_all, policy_kl, summarize, win_rate
from rlhf_core.world import format_prompt


def test_win_rate_counts_ties_as_half():
    w = win_rate([3, 2, 1, 5], [1, 2, 3, 4])
    assert (w.wins, w.ties, w.losses) == (2, 1, 1)
    assert w.rate == pytest.approx((2 + 0.5) / 4)


def test_win_rate_interval_matches_a_hand_computation():
    a = [1.0] * 30 + [0.0] * 10          # A wins 30 of 40
    w = win_rate(a, [0.5] * 40)
    sd = math.sqrt(sum((o - 0.75) ** 2 for o in [1] * 30 + [0] * 10) / 39)
    assert w.rate == 0.75
    assert (w.low, w.high) == pytest.approx((0.75 - 1.96 * sd / math.sqrt(40), 0.75 + 1.96 * sd / math.sqrt(40)))
    assert str(w) == f"75 ± {100 * 1.96 * sd / math.sqrt(40):.0f} %"


def test_win_rate_is_symmetric_and_bounded():
    a, b = [1, 2, 3, 3, 0], [2, 2, 1, 0, 1]
    assert win_rate(a, b).rate + win_rate(b, a).rate == pytest.approx(1.0)
    all_wins = win_rate([1] * 5, [0] * 5)
    assert all_wins.rate == 1.0 and all_wins.high == 1.0 and all_wins.low == 1.0
    with pytest.raises(ValueError, match="same, non-zero number"):
        win_rate([1, 2], [1])


def test_summarize_rates():
    prompt = format_prompt("What colour is a banana?")
    judgements = judge_all([prompt] * 4, [" A banana is yellow.", " A banana is blue.", " You idiot.", " Sure."],
                           SimulatedLabeler())
    s = summarize(judgements)
    assert s["hallucination_rate"] == 0.25 and s["toxicity_rate"] == 0.25
    assert s["instruction_following_rate"] == 0.25 and s["off_task_rate"] == 0.75
    with pytest.raises(ValueError, match="one response per prompt"):
        judge_all([prompt], [])


def test_policy_kl_is_zero_against_itself_and_positive_against_another_model():
    model, tok = load_base("tiny")
    prompts = [format_prompt("What colour is a banana?"), format_prompt("Count from 3 to 6.")] * 4
    assert policy_kl(model, model, tok, prompts) == pytest.approx(0.0, abs=1e-4)
    other, _ = load_base("tiny")
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.05 * torch.randn_like(p))
    assert policy_kl(model, other, tok, prompts) > 0.05


def test_pipeline_runs_every_stage_and_writes_the_results(tmp_path):
    from rlhf_core.pipeline import PipelineConfig, run_pipeline

    config = PipelineConfig().with_seed(3)  # any seed, not only the default
    config.sft.epochs = 1
    config.reward.k, config.reward.k_from_base, config.reward.epochs = 3, 1, 1
    config.ppo.iterations, config.ppo.batch_size, config.ppo.ppo_epochs = 2, 16, 1
    printed = []
    results = run_pipeline(config, tmp_path, progress=False, log=printed.append)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["gold_score"].keys() == {"base", "sft", "ppo"}
    assert saved["win_rate"].keys() >= {"ppo_vs_sft", "ppo_vs_base", "sft_vs_base"}
    assert all(0 <= w["ci95"][0] <= w["rate"] <= w["ci95"][1] <= 1 for w in saved["win_rate"].values())
    assert saved["kl"]["ppo_vs_sft"] > -0.5 and 0 <= saved["rm_accuracy"] <= 1
    assert 0.5 < saved["labeler_agreement"] <= 1
    assert set(saved["seconds"]) == {"base", "sft", "reward_model", "ppo"}
    assert saved["gold_score"]["sft"] > saved["gold_score"]["base"], "one epoch of SFT should already help"
    assert (tmp_path / "ppo.png").stat().st_size > 0 and (tmp_path / "rates.png").stat().st_size > 0
    assert "win rate ppo_vs_sft" in printed[-1]
    assert results["config"]["seed"] == 3
