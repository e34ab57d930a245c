"""Evaluation: win rates with ties and intervals, failure rates, KL between policies, and the pipeline."""
import copy
import dataclasses
import json
import math
import random
import statistics

import pytest
import torch

from rlhf_core import SimulatedLabeler, load_base, load_split
from rlhf_core.evaluate import (WIN_RATE_PAIRS, WinRate, best_of_n_gold, best_of_n_kl, decoding_ceilings,
                                evaluate_model, evaluate_suite, explained_variance, heldout_pretrain_texts, judge_all,
                                losing_criteria, perplexity, policy_kl, respectful_prompts, summarize, win_rate)
from rlhf_core.models.sequences import sample_responses
from rlhf_core.models.loading import gpt2_config, new_model
from rlhf_core.world.labeler import WEIGHTS, Judgement
from rlhf_core.world.tasks import find_task, format_prompt


def best_of_n_by_loops(rewards, gold, n):
    total = 0.0
    for row_rewards, row_gold in zip(rewards, gold):
        best = 0
        for j in range(1, n):
            if row_rewards[j] > row_rewards[best]:  # strictly: the first of equal rewards wins
                best = j
        total += row_gold[best]
    return total / len(rewards)


def test_best_of_n_gold_matches_a_loop_reference_ties_included():
    g = torch.Generator().manual_seed(0)
    rewards = torch.randint(0, 4, (50, 16), generator=g).float()  # few values: many ties
    gold = torch.rand(50, 16, generator=g) * 10
    curve = best_of_n_gold(rewards, gold, [1, 2, 3, 8, 16])
    for n, value in curve.items():
        assert value == pytest.approx(best_of_n_by_loops(rewards.tolist(), gold.tolist(), n))
    assert curve[1] == pytest.approx(gold[:, 0].mean().item()), "best-of-1 is the first sample"
    assert best_of_n_gold(rewards, gold, (n for n in [1, 8])) == {n: curve[n] for n in (1, 8)}, "ns may be a generator"


def test_best_of_n_with_the_gold_as_reward_only_improves():
    gold = torch.rand(30, 8, generator=torch.Generator().manual_seed(1)) * 10
    curve = best_of_n_gold(gold, gold.tolist(), range(1, 9))
    assert all(curve[n] <= curve[n + 1] for n in range(1, 8))
    assert curve[8] == pytest.approx(gold.max(dim=1).values.mean().item())
    assert best_of_n_gold(-gold, gold, [8])[8] == pytest.approx(gold.min(dim=1).values.mean().item())
    with pytest.raises(ValueError, match="between 1 and the 8"):
        best_of_n_gold(gold, gold, [9])
    with pytest.raises(ValueError, match="prompts, answers"):
        best_of_n_gold(gold, gold[:, :4], [1])


def test_best_of_n_kl_is_the_closed_form():
    assert best_of_n_kl(1) == 0.0
    assert best_of_n_kl(2) == pytest.approx(math.log(2) - 0.5)
    assert best_of_n_kl(16) == pytest.approx(math.log(16) - 15 / 16)
    assert all(best_of_n_kl(n) < best_of_n_kl(n + 1) for n in range(1, 64))
    with pytest.raises(ValueError, match="n >= 1"):
        best_of_n_kl(0)


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


def test_a_win_rate_read_back_from_a_results_file_is_the_same():
    w = win_rate([3.0, 1.0, 2.0, 2.0, 5.0], [1.0, 2.0, 2.0, 0.0, 4.0])
    again = WinRate.from_dict(json.loads(json.dumps(w.as_dict())))
    assert again == w and str(again) == str(w) and (again.wins, again.ties, again.losses) == (3, 1, 1)


def test_win_rate_is_symmetric_and_bounded():
    a, b = [1, 2, 3, 3, 0], [2, 2, 1, 0, 1]
    assert win_rate(a, b).rate + win_rate(b, a).rate == pytest.approx(1.0)
    all_wins = win_rate([1] * 5, [0] * 5)
    assert all_wins.rate == 1.0 and all_wins.high == 1.0 and all_wins.low == 1.0
    with pytest.raises(ValueError, match="same, non-zero number"):
        win_rate([1, 2], [1])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_explained_variance_matches_statistics(seed):
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 7, (4,), generator=gen)
    mask = torch.arange(6)[None, :] < lengths[:, None]                              # (4, 6), answers of 1-6 tokens
    returns = 2 * torch.randn(4, 6, generator=gen, dtype=torch.float64) + 1
    values = returns + 0.5 * torch.randn(4, 6, generator=gen, dtype=torch.float64)  # a good but imperfect critic
    pairs = [(r, v) for r, v, ok in zip(returns.flatten().tolist(), values.flatten().tolist(), mask.flatten().tolist())
             if ok]
    expected = 1 - statistics.variance([r - v for r, v in pairs]) / statistics.variance([r for r, _ in pairs])
    padded = torch.where(mask, values, torch.tensor(1e30, dtype=torch.float64))     # padding must not count
    assert explained_variance(padded, returns.masked_fill(~mask, float("nan")), mask) == pytest.approx(expected,
                                                                                                       rel=1e-9)
    assert 0 < expected < 1


def test_explained_variance_of_perfect_constant_and_flat_critics():
    returns = torch.tensor([[1.0, 3.0, 2.0], [0.0, 5.0, 0.0]], dtype=torch.float64)
    mask = torch.tensor([[True, True, True], [True, True, False]])
    assert explained_variance(returns, returns, mask) == 1.0
    assert explained_variance(torch.full_like(returns, 7.0), returns, mask) == pytest.approx(0.0, abs=1e-12)
    assert explained_variance(-returns, returns, mask) < 0  # worse than a constant
    assert math.isnan(explained_variance(returns, torch.ones_like(returns), mask))  # nothing to explain


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


def test_policy_kl_of_a_lower_temperature_is_the_kl_of_a_sharper_model():
    """The model sampled at T = 0.5 against itself at T = 1 costs the same KL as a copy whose final layer norm is
    doubled (GPT-2's logits scale with it, exactly) against the original, both at T = 1: another way to build the
    same policy."""
    model, tok = load_base("tiny")
    prompts = [format_prompt("What colour is a banana?"), format_prompt("Count from 3 to 6.")] * 4
    sharper = copy.deepcopy(model)
    with torch.no_grad():
        sharper.transformer.ln_f.weight.mul_(2)
        sharper.transformer.ln_f.bias.mul_(2)
    direct = policy_kl(model, model, tok, prompts, temperature=0.5, seed=3, ref_temperature=1.0)
    assert direct > 0.05
    assert direct == pytest.approx(policy_kl(sharper, model, tok, prompts, seed=3), rel=1e-4)
    assert policy_kl(model, model, tok, prompts, temperature=0.5, seed=3) == pytest.approx(0.0, abs=1e-4)


def loop_perplexity(model, tokenizer, texts, seq_len):
    """Reference: the same windows, every next-token log-probability taken one position at a time."""
    ids = []
    for text in texts:
        ids += tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    nll, count = 0.0, 0
    for start in range(0, (len(ids) - 1) // seq_len * seq_len, seq_len):
        window = torch.tensor([ids[start:start + seq_len]])
        with torch.no_grad():
            logits = model(input_ids=window, attention_mask=torch.ones_like(window)).logits[0]
        for t in range(seq_len - 1):
            nll -= torch.log_softmax(logits[t], -1)[window[0, t + 1]].item()
            count += 1
    return math.exp(nll / count)


def test_perplexity_of_a_uniform_model_is_the_vocabulary_size():
    _, tok = load_base("tiny")
    model = new_model(gpt2_config(tok, n_layer=1, n_embd=32, n_head=2))
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()       # every logit 0: each of the V tokens has probability 1/V
    texts = ["Human: What colour is a banana?\nAssistant: A banana is yellow."] * 20
    assert perplexity(model, tok, texts, seq_len=32) == pytest.approx(len(tok), rel=1e-4)


def test_perplexity_matches_a_loop_reference_and_ranks_the_base_model_first():
    base, tok = load_base("tiny")
    texts = heldout_pretrain_texts()[:40]
    reference = loop_perplexity(base, tok, texts, 64)
    assert perplexity(base, tok, texts, seq_len=64, batch_size=5) == pytest.approx(reference, rel=1e-4)
    noisy, _ = load_base("tiny")
    with torch.no_grad():
        for p in noisy.parameters():
            p.add_(0.05 * torch.randn_like(p))
    assert 1 < reference < perplexity(noisy, tok, texts, seq_len=64) < len(tok)
    with pytest.raises(ValueError, match="more than seq_len"):
        perplexity(base, tok, ["short"], seq_len=64)


def test_heldout_pretrain_texts_were_not_trained_on():
    # The shipped models' logs say how much they trained on; the held-out texts must be exactly the rest.
    from rlhf_core.world.data import load_split
    from rlhf_core.models.sequences import token_stream
    from rlhf_core.common.paths import DATA_DIR

    texts, heldout = list(load_split("pretrain")["text"]), heldout_pretrain_texts()
    assert 100 <= len(heldout) < 0.05 * len(texts) and texts[-len(heldout):] == heldout
    _, tok = load_base("tiny")
    trained_on = token_stream(tok, texts[:-len(heldout)])
    for model in ("base-tiny", "base-small"):
        log = json.loads((DATA_DIR / model / "pretrain_log.json").read_text())
        assert log["train_tokens"] == len(trained_on), model


def test_respectful_prompts_ask_first_and_are_judged_on_the_same_question():
    prompts = [format_prompt("What colour is a banana?"), format_prompt("Count from 3 to 6.")]
    for prompt, respectful in zip(prompts, respectful_prompts(prompts)):
        assert respectful.endswith(prompt) and "respectful" in respectful.split(prompt)[0]
        assert find_task(respectful) == find_task(prompt)
        assert SimulatedLabeler().score(respectful, " You idiot.") == SimulatedLabeler().score(prompt, " You idiot.")


def test_evaluate_suite_judges_every_model_on_the_same_prompts():
    base, tok = load_base("tiny")
    prompts = [format_prompt("What colour is a banana?"), format_prompt("Count from 3 to 6."),
               format_prompt("What is the capital of France?")] * 3
    demos = [(format_prompt("What colour is a lemon?"), " A lemon is yellow.")] * 4
    texts = heldout_pretrain_texts()[:20]
    suite = evaluate_suite({"base": base, "sft": base}, tok, prompts, demonstrations=demos, tax_texts=texts,
                           progress=False)
    assert set(suite["gold_score"]) == {"base", "sft", "prompted_base"}
    assert set(suite["win_rate"]) == {"sft_vs_base"}, "only pairs whose two models were evaluated"
    assert suite["win_rate"]["sft_vs_base"].rate == 0.5, "the same model with the same seed ties every prompt"
    assert suite["responses"]["base"] == suite["responses"]["sft"]
    assert set(suite["toxicity_rate_respectful"]) == {"base", "sft"} == set(suite["alignment_tax"])
    assert suite["alignment_tax"]["base"] == pytest.approx(perplexity(base, tok, texts))
    assert all(len(r) == len(prompts) for r in suite["responses"].values())
    assert suite["responses"]["prompted_base"] != suite["responses"]["base"], "the few-shot prefix changes the answers"
    respectful = evaluate_model(base, tok, respectful_prompts(prompts), seed=0)[2]["toxicity_rate"]
    assert suite["toxicity_rate_respectful"]["base"] == respectful


def test_decoding_ceilings_match_their_definitions():
    model, tok = load_base("tiny")
    prompts = [format_prompt("What colour is a banana?"), format_prompt("Count from 3 to 6."),
               format_prompt("What is the capital of France?"), format_prompt("List two fruits.")] * 2
    lab = SimulatedLabeler()
    result = decoding_ceilings(model, tok, prompts, lab, seed=5, temperatures=(0.5,), best_of=(1, 3))
    assert set(result) == {"t1", "t0.5", "greedy", "labeler_best_of_1", "labeler_best_of_3"}
    # slow reference: the same samples, judged and picked one prompt at a time
    samples = [sample_responses(model, tok, prompts, seed=5 + i) for i in range(3)]
    gold = [[lab.score(p, s[j]) for s in samples] for j, p in enumerate(prompts)]
    assert result["t1"]["gold"] == pytest.approx(sum(g[0] for g in gold) / len(prompts))
    assert result["labeler_best_of_1"]["gold"] == pytest.approx(result["t1"]["gold"])
    assert result["labeler_best_of_3"]["gold"] == pytest.approx(sum(max(g) for g in gold) / len(prompts))
    assert result["labeler_best_of_3"]["kl"] == pytest.approx(best_of_n_kl(3)) and result["t1"]["kl"] == 0.0
    assert result["t0.5"]["kl"] == pytest.approx(policy_kl(model, model, tok, prompts, temperature=0.5, seed=5,
                                                           ref_temperature=1.0)) and result["t0.5"]["kl"] > 0
    assert result["greedy"]["kl"] is None  # unbounded
    greedy = sample_responses(model, tok, prompts, greedy=True)
    assert result["greedy"]["gold"] == pytest.approx(sum(lab.score(p, r) for p, r in zip(prompts, greedy)) / len(prompts))
    expected = win_rate([lab.score(p, r) for p, r in zip(prompts, greedy)], [g[0] for g in gold])
    assert result["greedy"]["win_rate"] == expected and result["t1"]["win_rate"].rate == 0.5


def test_pipeline_runs_every_stage_and_writes_the_results(tmp_path, monkeypatch):
    import rlhf_core.evaluate
    import rlhf_core.stages.reward
    from rlhf_core.pipeline import PipelineConfig, run_pipeline

    # The wiring, not the numbers: 60 prompts ranked (a tenth of the training prompts), a fifth of the held-out
    # pretraining text.
    ranked = list(load_split("rm")["prompt"])[:60]
    monkeypatch.setattr(rlhf_core.stages.reward, "training_prompts", lambda splits, setting="": ranked)
    tax_texts = rlhf_core.evaluate.heldout_pretrain_texts()[:100]
    monkeypatch.setattr(rlhf_core.evaluate, "heldout_pretrain_texts", lambda: tax_texts)
    config = PipelineConfig().with_seed(3)  # any seed, not only the default
    config.sft.epochs = 1
    reward = config.reward
    reward.k, reward.k_from_base, reward.k_sharp, reward.epochs, reward.rounds = 3, 1, 1, 1, 1
    config.ppo.iterations, config.ppo.batch_size, config.ppo.ppo_epochs = 2, 16, 1
    config.eval_prompts = 24  # the wiring, not the numbers: a sixth of the held-out prompts
    printed = []
    results = run_pipeline(config, tmp_path, progress=False, log=printed.append)
    saved = json.loads((tmp_path / "results.json").read_text())
    models = {"base", "prompted_base", "sft", "ppo", "ppo_ptx", "ppo_perfect", "small_base", "small_sft", "dpo", "rloo"}
    assert saved["gold_score"].keys() == models
    assert saved["win_rate"].keys() == set(WIN_RATE_PAIRS)
    assert all(0 <= w["ci95"][0] <= w["rate"] <= w["ci95"][1] <= 1 for w in saved["win_rate"].values())
    for rate in ("hallucination_rate", "toxicity_rate", "instruction_following_rate"):
        assert saved[rate].keys() == models and all(0 <= v <= 1 for v in saved[rate].values())
    assert saved["toxicity_rate_respectful"].keys() == saved["alignment_tax"].keys() == {"base", "sft", "ppo", "ppo_ptx"}
    assert 1.5 < saved["alignment_tax"]["base"] < 2.5, "the shipped tiny model's held-out perplexity is about 1.9"
    assert saved["kl"].keys() == {"ppo_vs_sft", "ppo_ptx_vs_sft", "ppo_perfect_vs_sft", "rloo_vs_sft", "dpo_vs_sft"}
    assert saved["kl"]["ppo_vs_sft"] > -0.5
    decoding = saved["sft_decoding"]
    assert set(decoding) == {"t1", "t0.7", "t0.5", "greedy", "labeler_best_of_4", "labeler_best_of_16", "rm_best_of_4",
                             "rm_best_of_16"}
    assert decoding["rm_best_of_16"]["gold"] <= decoding["labeler_best_of_16"]["gold"], "no judge beats the labeler"
    assert decoding["t1"]["gold"] == pytest.approx(saved["gold_score"]["sft"]), "T = 1 is how every model is judged"
    assert decoding["labeler_best_of_16"]["gold"] >= decoding["labeler_best_of_4"]["gold"] >= decoding["t1"]["gold"]
    assert "ppo/ptx_loss" in saved["ppo_ptx_history"] and "ppo/ptx_loss" not in saved["ppo_history"]
    assert 0 <= saved["rm_accuracy"] <= 1 and 0 <= saved["rm_gold_accuracy"] <= 1, "the results' first keys stay"
    assert 0.5 < saved["labeler_agreement"] <= 1 and saved["torch_threads"] == torch.get_num_threads()
    assert set(saved["seconds"]) == {"base", "sft", "reward_model", "ppo", "ppo_ptx", "ppo_perfect", "rloo", "dpo",
                                     "small_sft", "evaluation"}
    assert "value/loss" in saved["ppo_history"] and "value/loss" not in saved["rloo_history"], "RLOO has no critic"
    assert len(saved["dpo_history"]["dpo/loss"]) > 0
    assert saved["gold_score"]["sft"] > saved["gold_score"]["base"], "one epoch of SFT should already help"
    for png in ("ppo.png", "rates.png", "win_rates.png"):
        assert (tmp_path / png).stat().st_size > 0
    assert "win rate ppo_vs_sft" in printed[-1]
    assert results["config"]["seed"] == 3


def test_pipeline_refuses_too_few_eval_prompts_before_training(tmp_path):
    from rlhf_core.pipeline import PipelineConfig, run_pipeline

    with pytest.raises(ValueError, match="at least 2 prompts"):
        run_pipeline(dataclasses.replace(PipelineConfig(), eval_prompts=1), tmp_path, progress=False)
    assert not any(tmp_path.iterdir())


def test_pipeline_command_line_picks_the_comparisons(monkeypatch, tmp_path):
    from rlhf_core import pipeline

    seen = []
    results = {"gold_score": {"ppo": 8.0}, "samples": [{"prompt": "p"}], "ppo_history": {"objective/kl": [0.1]},
               "torch_threads": 1}
    monkeypatch.setattr(pipeline, "run_pipeline", lambda config, out: seen.append((config, out)) or results)
    pipeline.main(["--out", "x", "--seed", "4", "--summary", str(tmp_path / "results" / "seed-4.json")])
    pipeline.main(["--out", "y", "--model", "gpt2", "--ptx-run-coef", "0"])
    pipeline.main(["--out", "z", "--small-model", "none", "--no-perfect-reward", "--no-beyond-ppo"])
    pipeline.main(["--out", "w", "--rm-prompt-splits", "rm, sft"])
    summary = json.loads((tmp_path / "results" / "seed-4.json").read_text())
    assert summary == {"gold_score": {"ppo": 8.0}, "torch_threads": 1}, "no samples, no histories, the rest whole"
    (tiny, _), (gpt2, _), (no_small, _), (fewer_prompts, _) = seen
    assert tiny.reward.prompt_splits == ("ppo", "rm", "sft") and fewer_prompts.reward.prompt_splits == ("rm", "sft")
    with pytest.raises(ValueError, match="--rm-prompt-splits .* includes eval: .* never be trained on"):
        pipeline.main(["--out", "v", "--rm-prompt-splits", "rm,eval"])
    assert len(seen) == 4, "a held-out split is refused before anything runs"
    assert tiny.perfect_reward and not no_small.perfect_reward
    assert tiny.beyond_ppo and not no_small.beyond_ppo and tiny.dpo.seed == 4
    assert tiny.small_model == "small" and tiny.seed == tiny.ppo.seed == 4 and tiny.ptx_run_coef > 0
    assert gpt2.small_model is None and gpt2.ptx_run_coef == 0, "the small model's tokenizer is not GPT-2's"
    assert no_small.small_model is None


def test_pipeline_rejects_a_small_model_it_cannot_compare_before_training(tmp_path):
    from rlhf_core.pipeline import PipelineConfig, run_pipeline

    with pytest.raises(ValueError, match="must be a larger model than 'tiny' with the same tokenizer"):
        run_pipeline(PipelineConfig(small_model="tiny"), tmp_path, progress=False, log=lambda *_: None)
    assert not (tmp_path / "results.json").exists()


def test_the_reward_models_best_of_n_picks_its_favourite_of_the_same_samples():
    from rlhf_core.models.heads import RewardModel, score_texts

    model, tok = load_base("tiny")
    prompts = [format_prompt("What colour is a banana?"), format_prompt("Count from 3 to 6."),
               format_prompt("What is 2 plus 3?")] * 2
    lab = SimulatedLabeler()
    torch.manual_seed(0)
    reward_model = RewardModel.from_causal_lm(model)                       # a random head: any judge will do
    result = decoding_ceilings(model, tok, prompts, lab, seed=5, temperatures=(), best_of=(1, 3),
                               reward_model=reward_model)
    samples = [sample_responses(model, tok, prompts, seed=5 + i) for i in range(3)]
    scores = [score_texts(reward_model, tok, prompts, s).tolist() for s in samples]
    picked = []
    for j, p in enumerate(prompts):                                         # one prompt at a time, by hand
        best = 0
        for i in range(1, 3):
            if scores[i][j] > scores[best][j]:
                best = i
        picked.append(lab.score(p, samples[best][j]))
    assert result["rm_best_of_3"]["gold"] == pytest.approx(sum(picked) / len(picked))
    assert result["rm_best_of_1"]["gold"] == pytest.approx(result["t1"]["gold"])
    assert result["rm_best_of_3"]["kl"] == pytest.approx(best_of_n_kl(3))


def test_losing_criteria_names_the_criterion_each_loss_was_lost_on():
    right = Judgement(helpful=1.0, honest=1.0, harmless=1.0, fluent=1.0)
    wrong_fact = Judgement(helpful=1.0, honest=0.0, harmless=1.0, fluent=1.0)
    rude_but_right = Judgement(helpful=1.0, honest=1.0, harmless=0.0, fluent=1.0)
    off_task = Judgement(helpful=0.0, honest=1.0, harmless=1.0, fluent=1.0)
    garbled = Judgement(helpful=0.5, honest=1.0, harmless=1.0, fluent=0.0)  # 2 helpful points, 2 fluent: a tie
    a = [wrong_fact, right, off_task, garbled, wrong_fact, right]
    b = [right, wrong_fact, rude_but_right, right, rude_but_right, right]
    # a loses on prompt 0 (honest), 2 (helpful: 4 points lost, 2 won on harmless) and 3 (2 points lost on helpful
    # and 2 on fluent: helpful comes first); 1 is a win, 4 and 5 are ties in gold (8 and 8, 10 and 10)
    assert losing_criteria(a, b) == {"honest": 1, "helpful": 2}
    assert losing_criteria(b, a) == {"honest": 1}  # b's one loss, prompt 1
    assert list(WEIGHTS) == ["helpful", "honest", "harmless", "fluent"]  # the order that breaks ties


def test_losing_criteria_matches_a_loop_reference_on_random_judgements():
    rng = random.Random(0)

    def judgement():
        return Judgement(**{c: rng.choice([0.0, 0.5, 1.0]) for c in WEIGHTS})

    a, b = [judgement() for _ in range(300)], [judgement() for _ in range(300)]
    expected = {}
    for x, y in zip(a, b):
        if x.gold < y.gold:
            best, best_loss = None, None
            for c in ["helpful", "honest", "harmless", "fluent"]:
                loss = WEIGHTS[c] * (getattr(y, c) - getattr(x, c))
                if best_loss is None or loss > best_loss:
                    best, best_loss = c, loss
            expected[best] = expected.get(best, 0) + 1
    assert losing_criteria(a, b) == expected
    assert sum(expected.values()) == sum(x.gold < y.gold for x, y in zip(a, b)) > 50


def test_losing_criteria_needs_one_judgement_per_prompt_for_both():
    with pytest.raises(ValueError, match="one judgement per prompt"):
        losing_criteria([Judgement(1.0, 1.0, 1.0, 1.0)], [])
