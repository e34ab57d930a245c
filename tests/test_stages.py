"""The three stages learn: short runs with fixed seeds, asserted with margins that could fail."""
import copy
import json
import math
import random

import pytest
import torch
from torch import nn

from rlhf_core import SimulatedLabeler, find_task, load_base, load_split
from rlhf_core.stages import reward
from rlhf_core.models.sequences import sample_responses
from rlhf_core.models.heads import RewardModel, ValueModel, score_texts
from rlhf_core.stages.ppo import PPOConfig, PPOTrainer, in_length_chunks, length_grouped_minibatches, ppo_prompts
from rlhf_core.evaluate import win_rate
from rlhf_core.stages.reward import (RewardConfig, build_reward_model, collect_comparisons, evaluate_reward_model,
                                     pairwise_accuracy, split_heldout, train_reward_model)
from rlhf_core.models.sequences import Rollout, generate
from rlhf_core.stages.sft import SFTConfig, batch_sft_loss, sft_batch, train_sft
from rlhf_core.world.corpus import flawed_response, padded_response, terse_response
from rlhf_core.world.data import TRAINING_PROMPT_SPLITS, training_prompts
from rlhf_core.world.tasks import all_tasks, ideal_response


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return load_base("tiny")


@pytest.fixture(scope="module")
def sft_tiny(tiny):
    """The tiny base model fine-tuned on every demonstration with the course's SFT settings (no validation split)."""
    model = copy.deepcopy(tiny[0])
    train_sft(model, tiny[1], SFTConfig(val_fraction=0.0), demonstrations=list(load_split("sft")), progress=False)
    return model.eval()


def test_sft_batch_masks_only_the_response_and_its_eos(tiny):
    _, tok = tiny
    input_ids, attention_mask, response_mask = sft_batch(tok, ["Human: What does a cow say?\nAssistant:"],
                                                         [" A cow says moo."])
    targets = input_ids[response_mask].tolist()
    assert tok.decode(targets[:-1]) == " A cow says moo." and targets[-1] == tok.eos_token_id
    assert not response_mask[~attention_mask].any()


def test_sft_learns_the_demonstrations(tiny):
    model, tok = copy.deepcopy(tiny[0]), tiny[1]
    demos = [d for d in load_split("sft") if d["style"] == "plain"][:48]  # the style the labeler prefers
    prompts, responses = [d["prompt"] for d in demos], [d["response"] for d in demos]
    with torch.no_grad():
        before = batch_sft_loss(model, tok, prompts, responses).item()
    log = train_sft(model, tok, SFTConfig(epochs=3, val_fraction=0.0), demonstrations=demos, progress=False)
    with torch.no_grad():
        after = batch_sft_loss(model, tok, prompts, responses).item()
    assert after < 0.8 * before, (before, after)
    steps = len(log["sft/loss"]) // 3  # per epoch: batches differ, so compare the first and the last epoch's mean
    assert sum(log["sft/loss"][-steps:]) < sum(log["sft/loss"][:steps])
    # and the labeler likes what it now writes better than what the base model wrote
    lab = SimulatedLabeler()
    gold = lambda m: sum(lab.score(p, r) for p, r in zip(prompts, sample_responses(m, tok, prompts, seed=1)))
    assert gold(model) > gold(tiny[0]) + 0.5 * len(prompts), "SFT did not raise the gold score"


def test_sft_stops_with_a_clear_error_on_nan(tiny):
    model, tok = copy.deepcopy(tiny[0]), tiny[1]
    with torch.no_grad():
        model.transformer.wte.weight[0, 0] = float("nan")
    with pytest.raises((ValueError, FloatingPointError), match="NaN|nan"):
        train_sft(model, tok, SFTConfig(epochs=1), demonstrations=list(load_split("sft"))[:8], progress=False)


def test_pairwise_accuracy_counts_pairs_in_order():
    rewards = torch.tensor([[3.0, 2.0, 1.0], [1.0, 2.0, 3.0]])
    assert pairwise_accuracy(rewards) == 0.5
    only_first_row = torch.zeros(2, 3, 3, dtype=torch.bool)
    only_first_row[0] = True
    assert pairwise_accuracy(rewards, only_first_row) == 1.0


def test_collect_comparisons_ranks_k_responses_per_prompt(tiny):
    model, tok = tiny
    prompts = list(load_split("rm")["prompt"])[:3]
    comps = collect_comparisons([(model, 3), (model, 1)], tok, prompts, SimulatedLabeler(noise_std=0.0))
    assert [len(c["responses"]) for c in comps] == [4, 4, 4]
    for c in comps:  # a noiseless labeler ranks by gold
        assert c["gold"] == sorted(c["gold"], reverse=True)
    with pytest.raises(ValueError, match="K = 10"):
        collect_comparisons([(model, 10)], tok, prompts)


def test_collect_comparisons_ranks_every_prompt_once_per_round(tiny):
    model, tok = tiny
    prompts = list(load_split("rm")["prompt"])[:4]
    one = collect_comparisons([(model, 3)], tok, prompts, SimulatedLabeler(noise_std=0.0), seed=5)
    three = collect_comparisons([(model, 3)], tok, prompts, SimulatedLabeler(noise_std=0.0), seed=5, rounds=3)
    assert [c["prompt"] for c in three] == prompts * 3
    assert three[:4] == one  # round 0 is what a single round collects
    fresh = [set(three[i]["responses"]) != set(three[i + 4]["responses"]) for i in range(4)]
    assert sum(fresh) >= 3, "later rounds must sample new answers, not re-rank the same ones"
    with pytest.raises(ValueError, match="rounds = 0"):
        collect_comparisons([(model, 3)], tok, prompts, rounds=0)


def test_sharp_answers_are_sampled_at_their_own_temperature(tiny, monkeypatch):
    model, tok = tiny
    prompts = list(load_split("rm")["prompt"])[:3]
    base = copy.copy(model)  # another object: which model wrote an answer shows in its text
    def fake_sampling(m, tokenizer, repeated, temperature, seed, **kwargs):
        source = "base" if m is base else "sft"
        return [f" {source} T={temperature:g} #{i}" for i in range(len(repeated))]
    monkeypatch.setattr(reward, "sample_responses", fake_sampling)
    comps = collect_comparisons([(model, 3), (base, 1), (model, 2, 0.5)], tok, prompts, temperature=0.9)
    for c in comps:
        sources = sorted(r.split(" #")[0].strip() for r in c["responses"])
        assert sources == ["base T=0.9"] + ["sft T=0.5"] * 2 + ["sft T=0.9"] * 3
    # build_reward_model: of K = 8, 1 from base, 3 sharp SFT answers split over two temperatures, 4 at T = 1
    seen = []
    def stop(models, *args, **kwargs):
        seen.extend((m is base, count, *rest) for m, count, *rest in models)
        raise InterruptedError
    monkeypatch.setattr(reward, "collect_comparisons", stop)
    with pytest.raises(InterruptedError):
        build_reward_model(model, tok, RewardConfig(k_sharp=3, sharp_temperatures=(0.7, 0.5)), base)
    assert seen == [(False, 4, 1.0), (True, 1, 1.0), (False, 2, 0.7), (False, 1, 0.5)]
    with pytest.raises(ValueError, match="k_sharp = 8"):
        build_reward_model(model, tok, RewardConfig(k_sharp=8), base)
    with pytest.raises(ValueError, match="no sharp_temperatures"):
        build_reward_model(model, tok, RewardConfig(k_sharp=2, sharp_temperatures=()), base)
    with pytest.raises(ValueError, match="no prompts to rank"):
        build_reward_model(model, tok, RewardConfig(), base, prompts=[])


def test_the_reward_model_ranks_the_prompts_of_its_configured_splits(tiny, monkeypatch):
    model, tok = tiny
    ranked = []
    def stop(models, tokenizer, prompts, *args, **kwargs):
        ranked.append(list(prompts))
        raise InterruptedError
    monkeypatch.setattr(reward, "collect_comparisons", stop)
    for splits in (("rm",), ("rm", "sft", "ppo")):
        with pytest.raises(InterruptedError):
            build_reward_model(model, tok, RewardConfig(prompt_splits=splits))
        assert ranked.pop() == [p for name in splits for p in load_split(name)["prompt"]]
    assert RewardConfig().prompt_splits == ("ppo", "rm", "sft"), "the default ranks every training prompt"
    with pytest.raises(ValueError, match="RewardConfig.prompt_splits .* includes dev: .* never be trained on"):
        build_reward_model(model, tok, RewardConfig(prompt_splits=("rm", "dev")))
    assert not ranked, "nothing is ranked before the check"
    # the reward model's record names every file its rankings' prompts came from, the demonstrations once
    assert list(reward.reward_provenance("tiny")["data"]) == ["ppo.jsonl", "rm.jsonl", "sft.jsonl"]
    rm_only = reward.reward_provenance("tiny", RewardConfig(prompt_splits=("rm",)))
    assert list(rm_only["data"]) == ["rm.jsonl", "sft.jsonl"]


def test_split_heldout_keeps_every_round_of_a_prompt_on_one_side():
    comparisons = [{"prompt": f"p{i}", "round": r} for r in range(3) for i in range(20)]
    train, heldout = split_heldout(comparisons, 0.25, seed=0)
    held = {c["prompt"] for c in heldout}
    assert len(held) == 5 and len(heldout) == 15 and len(train) == 45
    assert not held & {c["prompt"] for c in train}
    assert split_heldout(comparisons, 0.25, seed=0) == (train, heldout)
    assert {c["prompt"] for c in split_heldout(comparisons, 0.25, seed=1)[1]} != held


def test_comparison_scores_equal_scoring_each_answer_and_refuse_rankings_of_different_sizes(tiny):
    model, tok = tiny
    torch.manual_seed(0)
    reward_model = RewardModel.from_causal_lm(model).eval()
    prompts = list(load_split("rm")["prompt"])[:4]
    answers = [["Yes.", "A banana is yellow.", ""], ["Red.", "I won't help with that.", "Four plus four is eight."],
               ["Moo.", "The capital is Paris, and it is a big city.", "No"], ["Blue.", "Hello", "It is green."]]
    comparisons = [{"prompt": p, "responses": a} for p, a in zip(prompts, answers)]
    scores = reward.comparison_scores(reward_model, tok, comparisons)                        # (B, K)
    each = score_texts(reward_model, tok, [p for p in prompts for _ in range(3)], sum(answers, []))
    torch.testing.assert_close(scores, each.view(4, 3), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="different numbers of answers"):
        reward.comparison_scores(reward_model, tok, comparisons[:2] + [{"prompt": prompts[2], "responses": ["Yes."]}])


def test_reward_model_learns_the_labelers_preferences(tiny):
    # Comparisons of internet-quality answers (good, rude, wrong, rambling...) ranked by a noisy labeler
    model, tok = tiny
    rng, tasks, lab = random.Random(0), all_tasks(), SimulatedLabeler(seed=3)
    comps = []
    for task in rng.sample(tasks, 120):
        responses = [ideal_response(task, rng)] + [flawed_response(task, f, rng, tasks) for f in ("rude", "repeat", "short")]
        order = lab.rank(task.prompt, responses)
        ranked = [responses[i] for i in order]
        comps.append({"prompt": task.prompt, "responses": ranked, "gold": [lab.score(task.prompt, r) for r in ranked]})
    train, heldout = split_heldout(comps, 0.25, seed=0)
    torch.manual_seed(0)
    reward_model = RewardModel.from_causal_lm(model)
    before = evaluate_reward_model(reward_model, tok, heldout)["rm/heldout_gold_accuracy"]
    log = train_reward_model(reward_model, tok, train, RewardConfig(epochs=2, k=4, batch_size=4), heldout, progress=False)
    assert log["rm/heldout_gold_accuracy"] > 0.8 and log["rm/heldout_gold_accuracy"] > before + 0.2, (before, log)
    assert log["rm/loss"][-1] < log["rm/loss"][0]


def plain_preferred(reward_model, tok, prompts: list[str]) -> float:
    """How often the reward model scores the plain answer (the style the labeler's rubric prefers) above the same
    answer padded with pleasantries or clipped to a fragment, over `prompts`."""
    tasks, rng = {task.prompt: task for task in all_tasks()}, random.Random(0)
    pairs = []
    for prompt in prompts:
        task = tasks[prompt]
        plain = ideal_response(task, rng)
        pairs += [(prompt, plain, other) for other in (padded_response(task, plain, rng), terse_response(task, plain))
                  if other != plain]
    prompts, plains, others = (list(column) for column in zip(*pairs))
    plain_scores, other_scores = (score_texts(reward_model, tok, prompts, answers) for answers in (plains, others))
    return (plain_scores > other_scores).float().mean().item()


def test_fresh_rounds_of_rankings_teach_the_labelers_style_better_than_passes_over_one(tiny, sft_tiny):
    """The lever of RewardConfig.rounds: more labels, not more steps. Two reward models from the same SFT model and
    80 prompts, with the same 80 gradient steps: one ranking per prompt seen 8 times, or 4 rounds of fresh rankings
    seen twice. Measured on 94 RM prompts neither saw, by whether the plain answer outscores its padded and its
    fragment forms — the global preference that rankings teach and demonstrations could not. Seeds 0-4: 0.90-0.94
    with four rounds; 0.52, 0.78, 0.92, 0.89 and 0.71 with one (a single round is sometimes enough, not reliably)."""
    base, tok = tiny
    prompts = list(load_split("rm")["prompt"])
    train, unseen = prompts[:80], prompts[200:]

    def share(rounds, epochs):
        config = RewardConfig(k=4, k_from_base=1, k_sharp=0, rounds=rounds, epochs=epochs, heldout_fraction=0.0,
                              max_new_tokens=24, seed=0)
        reward_model, log, comparisons = build_reward_model(sft_tiny, tok, config, base, progress=False, prompts=train)
        assert len(comparisons) == 80 * rounds and len(log["step"]) == 80, "the same steps, different labels"
        return plain_preferred(reward_model, tok, unseen)

    one, four = share(rounds=1, epochs=8), share(rounds=4, epochs=2)
    assert four > 0.85 and four > one + 0.15, (one, four)


def test_a_reward_model_learns_a_subjects_fact_from_rankings_about_that_subject(tiny, sft_tiny):
    """The lever of RewardConfig.prompt_splits: which prompts are ranked. The subjects of the training prompts'
    factual questions (a country's capital, an animal's sound, a word's opposite, a thing's colour) are dealt into two
    halves; two reward models from the same SFT model, with the same number of rankings and steps, rank 80 prompts
    about one half each. Each is then asked, on the held-out dev and eval questions about each half, whether the right
    statement outscores a wrong one. Own half minus other half, averaged over both models: seeds 0-4 gave 0.21, 0.12,
    0.14, 0.17 and 0.19 (2 rounds, one thread; 0.19, 0.26, 0.18, 0.24 and 0.01 with 4 rounds): a fact is learned from
    rankings about it, which is why the course ranks every training prompt, not only the rm split's."""
    base, tok = tiny
    facts, tasks = ("capital", "sound", "opposite", "colour"), all_tasks()

    def subject(prompt):
        task = find_task(prompt)
        return task.family, task.subject

    train = [p for p in training_prompts(TRAINING_PROMPT_SPLITS) if find_task(p).family in facts]
    subjects = sorted({subject(p) for p in train})
    random.Random(0).shuffle(subjects)
    halves = (set(subjects[::2]), set(subjects[1::2]))
    held_out = [p for split in ("dev", "eval") for p in load_split(split)["prompt"] if find_task(p).family in facts]

    def right_beats_wrong(reward_model, half):  # share of held-out questions about `half` where the fact wins
        prompts = [p for p in held_out if subject(p) in half]
        rng = random.Random(1)
        right = [ideal_response(find_task(p), rng) for p in prompts]
        wrong = [flawed_response(find_task(p), "wrong_fact", rng, tasks) for p in prompts]
        return (score_texts(reward_model, tok, prompts, right) > score_texts(reward_model, tok, prompts, wrong)
                ).float().mean().item()

    share = {}
    for i, half in enumerate(halves):
        config = RewardConfig(k=4, k_from_base=1, k_sharp=0, rounds=2, epochs=2, heldout_fraction=0.0,
                              max_new_tokens=24, seed=0)
        prompts = [p for p in train if subject(p) in half][:80]
        reward_model, _, comparisons = build_reward_model(sft_tiny, tok, config, base, progress=False, prompts=prompts)
        assert len(comparisons) == 160, "the same number of rankings for both halves"
        share[i] = [right_beats_wrong(reward_model, judged) for judged in halves]
    own, other = (share[0][0] + share[1][1]) / 2, (share[0][1] + share[1][0]) / 2
    assert share[0][0] > share[1][0] and share[1][1] > share[0][1] and own > other + 0.1, share


class LengthPenalty(nn.Module):
    """A stand-in reward model: −0.3 per real token of prompt + response beyond `center`. Prompts are fixed, so only
    shorter responses raise it — a reward whose optimum we know. `per_token=+0.3` makes it a length bonus."""

    def __init__(self, center: float = 0.0, per_token: float = -0.3):
        super().__init__()
        self.center, self.per_token = center, per_token

    def forward(self, input_ids, attention_mask):
        return self.per_token * (attention_mask.sum(1).float() - self.center)


def zero_critic(model) -> ValueModel:
    """A critic on `model`'s body with its head at V = 0, as `initial_value_model` starts the course's."""
    value_model = ValueModel.from_causal_lm(model)
    torch.nn.init.zeros_(value_model.head.weight)
    torch.nn.init.zeros_(value_model.head.bias)
    return value_model


def test_ppo_raises_the_reward_within_a_few_iterations(tiny):
    model, tok = copy.deepcopy(tiny[0]), tiny[1]
    config = PPOConfig(iterations=8, batch_size=32, minibatch_size=16, ppo_epochs=4, lr=3e-4, init_kl_coef=0.01,
                       max_new_tokens=24, missing_eos_max_score=None, seed=0)
    # As in the course, the critic's head starts at V = 0, and the reward is centred so that 0 is a fair first guess
    # (~30 tokens of prompt and response). With an uncentred reward (about −12 here) and V = 0, GAE's λ-discounting
    # makes the early tokens of *long* answers look better than average after whitening, and PPO may lengthen them.
    value_model = zero_critic(model)
    trainer = PPOTrainer(model, tok, LengthPenalty(center=30), config, prompts=list(load_split("ppo")["prompt"])[:64],
                         value_model=value_model, labeler=SimulatedLabeler())
    history = trainer.train(progress=False)
    lengths = history["objective/length"]
    assert lengths[-1] < 0.7 * lengths[0], lengths
    assert history["objective/score"][-1] > history["objective/score"][0] + 1.0, history["objective/score"]
    assert all(0 <= c <= 1 for c in history["policy/clipfrac"])
    assert history["objective/kl"][0] == pytest.approx(0.0, abs=1e-4)  # the policy starts as the reference
    explained = history["value/explained_variance"]
    assert explained[0] == pytest.approx(0.0, abs=1e-6), "V = 0 explains none of the returns' spread"
    # The critic learns, slowly (its values move at most value_clip_range per rollout): 0.00 → 0.08 here
    assert sum(explained[-3:]) / 3 > sum(explained[:3]) / 3 + 0.02 and max(explained) <= 1, explained
    from rlhf_core.notebook.metrics import METRICS
    assert set(history) - {"iteration", "samples"} <= set(METRICS), "every logged metric is defined once, in METRICS"


def test_capping_cut_off_scores_closes_the_hole_of_answers_that_never_end(tiny):
    """The lever of missing_eos_max_score. The reward pays for every token, so without the cap the policy learns to
    run every answer into the token limit -- the hole a course reward model showed (it scored unfinished answers
    +6 above finished ones). With cut-off answers scored at most -1, ending an answer pays and the cut share falls."""
    prompts = list(load_split("ppo")["prompt"])[:64]

    def cut_share(cap):
        model, tok = copy.deepcopy(tiny[0]), tiny[1]
        config = PPOConfig(iterations=3, batch_size=32, minibatch_size=16, ppo_epochs=4, lr=3e-4, init_kl_coef=0.01,
                           max_new_tokens=12, missing_eos_max_score=cap, seed=0)
        value_model = zero_critic(model)
        trainer = PPOTrainer(model, tok, LengthPenalty(center=18, per_token=+0.3), config, prompts=prompts,
                             value_model=value_model, labeler=SimulatedLabeler())
        trainer.train(progress=False)
        return (~trainer.sample(prompts).ended_with_eos(tok.eos_token_id)).float().mean().item()

    before = (~generate(tiny[0], tiny[1], prompts, max_new_tokens=12, generator=torch.Generator().manual_seed(0))
              .ended_with_eos(tiny[1].eos_token_id)).float().mean().item()
    without_cap, with_cap = cut_share(None), cut_share(-1.0)
    assert 0.3 < before < 0.9, before  # the base model ends some answers within 12 tokens
    # With the cap the policy runs to the edge (the longest answer that still ends), so its cut share wanders
    # (0.06-0.45 over seeds 0-4 and 3-5 iterations); without it, every answer is cut (0.95-1.0).
    assert without_cap > 0.9 and with_cap < min(before, without_cap - 0.4), (before, without_cap, with_cap)


class Likelihood(nn.Module):
    """A stand-in reward only sharpening can raise: the mean log-probability a frozen copy of the starting model gives
    the real tokens of prompt and response. Its optimum is the same for every prompt: fewer unlikely tokens."""

    def __init__(self, model):
        super().__init__()
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    def forward(self, input_ids, attention_mask):
        logp = self.model(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1].log_softmax(-1)
        token_logp = logp.gather(-1, input_ids[:, 1:, None])[..., 0]    # (B, L-1)
        mask = attention_mask[:, 1:].bool()
        return token_logp.masked_fill(~mask, 0).sum(1) / mask.sum(1)    # (B,)


def test_the_final_norm_learning_rate_lets_ppo_sharpen_every_prompt_at_once(tiny):
    """The lever of final_norm_groups. The policy starts as the base model flattened to temperature 2 (final layer
    norm halved); the reward is the unflattened model's likelihood, so sharpening back is the way up, for every
    prompt. At lr 1e-5, PPO with the final layer norm at 5e-3 raises the gain and the reward within four iterations;
    with every weight at 1e-5 the gain cannot move and the reward barely does. The reward is measured on the same 64
    prompts and draws before and after (each iteration's own batch is a different half of them: too noisy)."""
    prompts = list(load_split("ppo")["prompt"])[:64]
    reward = Likelihood(tiny[0])

    def measured(model):
        rollout = generate(model, tiny[1], prompts, max_new_tokens=16, generator=torch.Generator().manual_seed(1))
        return reward(*rollout.sequences()).mean().item()

    def run(final_norm_lr):
        model, tok = copy.deepcopy(tiny[0]), tiny[1]
        with torch.no_grad():
            model.transformer.ln_f.weight /= 2
            model.transformer.ln_f.bias /= 2
        gain, before = model.transformer.ln_f.weight.mean().item(), measured(model)
        config = PPOConfig(iterations=4, batch_size=32, minibatch_size=16, lr=1e-5, final_norm_lr=final_norm_lr,
                           init_kl_coef=0.01, max_new_tokens=16, missing_eos_max_score=None, seed=0)
        trainer = PPOTrainer(model, tok, reward, config, prompts=prompts, value_model=zero_critic(model),
                             labeler=SimulatedLabeler())
        trainer.train(progress=False)
        return measured(trainer.policy) - before, trainer.policy.transformer.ln_f.weight.mean().item() / gain

    rise_without, gain_without = run(1e-5)
    rise_with, gain_with = run(5e-3)
    assert gain_with > 1.05 and abs(gain_without - 1) < 0.002, (gain_with, gain_without)
    # seeds 0-4: rise 0.64-0.92 with, 0.05-0.22 without
    assert rise_with > 0.5 and rise_with > rise_without + 0.3, (rise_with, rise_without)


def test_a_policy_without_gpt2s_final_norm_needs_final_norm_lr_equal_to_lr():
    from rlhf_core.stages.ppo import final_norm_groups

    policy = nn.Sequential(nn.Linear(3, 3), nn.LayerNorm(3))
    with pytest.raises(ValueError, match="set final_norm_lr = lr"):
        final_norm_groups(policy, PPOConfig(lr=1e-5, final_norm_lr=5e-3))
    (group,) = final_norm_groups(policy, PPOConfig(lr=1e-5, final_norm_lr=1e-5))
    assert len(group["params"]) == 4 and group["lr"] == 1e-5


def test_the_same_seed_gives_the_same_ppo_run(tiny):
    """Reproducibility: two 2-iteration runs from the same model and seed log the same numbers (time aside)."""
    def run():
        model, tok = copy.deepcopy(tiny[0]), tiny[1]
        config = PPOConfig(iterations=2, batch_size=16, minibatch_size=8, ppo_epochs=2, lr=1e-4, seed=3)
        torch.manual_seed(0)  # the fresh value head
        trainer = PPOTrainer(model, tok, LengthPenalty(), config, prompts=list(load_split("ppo")["prompt"])[:32],
                             value_model=ValueModel.from_causal_lm(model), labeler=SimulatedLabeler())
        history = trainer.train(progress=False)
        return {k: v for k, v in history.items() if k != "time/iteration"}, trainer.policy.state_dict()

    (first, weights), (second, weights_again) = run(), run()
    assert first == second
    assert all(torch.equal(weights[k], weights_again[k]) for k in weights)
    assert first["policy/loss"][0] != first["policy/loss"][1]  # it did train: not two copies of one iteration


def test_scoring_in_length_chunks_gives_each_episode_its_own_numbers(tiny):
    """PPOTrainer.score runs on chunks of similar-length episodes (in_length_chunks). Reference: each episode
    scored alone, a batch of one with nothing to pad — a loop, obviously right. Every chunk size must agree with
    it, put each row back in its place, and leave zeros on the padding."""
    model, tokenizer = tiny
    prompts = list(load_split("ppo")["prompt"][:12])
    trainer = PPOTrainer(copy.deepcopy(model), tokenizer, RewardModel.from_causal_lm(model),
                         PPOConfig(batch_size=12, minibatch_size=4), prompts=prompts)
    with torch.no_grad():  # the critic's head starts at V = 0, which would agree whatever the chunks did
        trainer.value_model.head.weight.normal_(0.0, 1.0, generator=torch.Generator().manual_seed(0))
    rollout = trainer.sample(prompts)
    lengths = rollout.response_mask.sum(1)
    assert lengths.min() < lengths.max()  # answers of different lengths: the chunks differ in width
    alone = []
    for b in range(len(rollout)):
        row = rollout[b:b + 1]
        width = int(row.response_mask.sum())
        alone.append(trainer.score_chunk(Rollout(row.query_ids, row.query_mask, row.response_ids[:, :width],
                                                  row.response_mask[:, :width], row.logprobs[:, :width])))
    for rows in (1, 3, 4, 12, 50):
        ref_logprobs, scores, values = in_length_chunks(trainer.score_chunk, rollout, rows)
        assert ref_logprobs.shape == values.shape == rollout.response_ids.shape and scores.shape == (12,)
        assert (values[rollout.response_mask] != 0).all()
        for b, (ref_b, score_b, values_b) in enumerate(alone):
            width = ref_b.shape[1]
            torch.testing.assert_close(ref_logprobs[b, :width], ref_b[0], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(values[b, :width], values_b[0], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(scores[b], score_b[0], atol=1e-5, rtol=1e-5)
            assert (ref_logprobs[b, width:] == 0).all() and (values[b, width:] == 0).all()
    torch.testing.assert_close(trainer.score(rollout)[1], torch.stack([s[0] for _, s, _ in alone]),
                               atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("group_by_length", [True, False])
def test_minibatches_hold_every_episode_once(group_by_length):
    generator = torch.Generator().manual_seed(0)
    for n, size in ((64, 16), (10, 4), (5, 8)):
        lengths = torch.randint(5, 60, (n,), generator=generator)
        minibatches = length_grouped_minibatches(lengths, size, generator, group_by_length)
        assert sorted(torch.cat(minibatches).tolist()) == list(range(n))
        assert [len(m) for m in minibatches if len(m) != size] in ([], [n % size])


def test_grouped_minibatches_cut_the_padding_and_still_vary():
    """Grouped by length, the longest row per minibatch (what a pass costs) falls; ties and order stay random."""
    generator = torch.Generator().manual_seed(0)
    lengths = torch.randint(15, 60, (64,), generator=generator)

    def width(group):  # padded tokens computed per epoch: each minibatch costs size x its longest row
        return sum(len(m) * int(lengths[m].max()) for m in length_grouped_minibatches(lengths, 16, generator, group))

    assert max(width(True) for _ in range(5)) < 0.85 * min(width(False) for _ in range(5))
    first, second = (length_grouped_minibatches(lengths, 16, generator) for _ in range(2))
    assert [m.tolist() for m in first] != [m.tolist() for m in second]
    ranges = sorted((int(lengths[m].min()), int(lengths[m].max())) for m in first)
    assert all(high <= next_low for (_, high), (next_low, _) in zip(ranges, ranges[1:]))  # consecutive lengths


def test_ppo_trains_on_every_training_prompt_and_never_on_dev_or_eval():
    prompts = ppo_prompts()
    for name in ("ppo", "rm", "sft"):
        assert set(load_split(name)["prompt"]) <= set(prompts)
    held_out = set(load_split("dev")["prompt"]) | set(load_split("eval")["prompt"])
    assert not held_out & set(prompts)
    assert len(prompts) == len(set(prompts)) > 3 * len(load_split("ppo"))  # no prompt twice, three times the ppo split
    assert ppo_prompts(("ppo",)) == list(load_split("ppo")["prompt"])
    for bad in (("ppo", "dev"), ("eval",)):
        with pytest.raises(ValueError, match="never be trained on"):
            ppo_prompts(bad)
    with pytest.raises(ValueError, match="unknown split"):
        ppo_prompts(("ppo", "train"))


def test_ppo_trainer_takes_its_prompts_from_the_configured_splits(tiny):
    model, tok = tiny
    value_model = ValueModel.from_causal_lm(model)
    for splits in (("rm",), ("ppo", "sft")):
        trainer = PPOTrainer(copy.deepcopy(model), tok, LengthPenalty(), PPOConfig(prompt_splits=splits),
                             ref_model=model, value_model=value_model)
        assert trainer.prompts == ppo_prompts(splits)
        assert set(trainer.next_prompts()) <= set(ppo_prompts(splits))


def test_ppo_rejects_a_nan_loss(tiny):
    model, tok = copy.deepcopy(tiny[0]), tiny[1]
    config = PPOConfig(iterations=1, batch_size=8, minibatch_size=8, ppo_epochs=1, seed=0)
    trainer = PPOTrainer(model, tok, LengthPenalty(), config, prompts=list(load_split("ppo")["prompt"])[:8],
                         value_model=ValueModel.from_causal_lm(model), labeler=SimulatedLabeler())
    with torch.no_grad():
        trainer.value_model.head.weight.fill_(float("nan"))
    with pytest.raises((FloatingPointError, ValueError), match="(?i)nan"):
        trainer.train(progress=False)


def test_a_second_trainer_from_the_same_sft_model_still_trains(tiny):
    # PPOTrainer freezes its reference; a later deepcopy of that reference must still be trainable.
    sft, tok = copy.deepcopy(tiny[0]), tiny[1]
    config = PPOConfig(iterations=1, batch_size=8, minibatch_size=8, ppo_epochs=1, lr=1e-3, seed=0)
    prompts = list(load_split("ppo")["prompt"])[:8]
    for _ in range(2):
        trainer = PPOTrainer(copy.deepcopy(sft), tok, LengthPenalty(), config, prompts=prompts, ref_model=sft,
                             value_model=ValueModel.from_causal_lm(sft), labeler=SimulatedLabeler())
        before = [p.clone() for p in trainer.policy.parameters()]
        trainer.train(progress=False)
        assert any(not torch.equal(a, b) for a, b in zip(before, trainer.policy.parameters()))
    with pytest.raises(ValueError, match="share parameters"):
        PPOTrainer(sft, tok, LengthPenalty(), config, prompts=prompts, ref_model=sft,
                   value_model=ValueModel.from_causal_lm(sft))


def test_ppo_ptx_mixes_in_the_pretraining_loss(tiny):
    # PPO-ptx (InstructGPT eq. 2, γ > 0): the policy also keeps a language-modelling loss on pretraining text
    model, tok = copy.deepcopy(tiny[0]), tiny[1]
    config = PPOConfig(iterations=1, batch_size=8, minibatch_size=8, ppo_epochs=1, ptx_coef=1.0, seed=0)
    trainer = PPOTrainer(model, tok, LengthPenalty(), config, prompts=list(load_split("ppo")["prompt"])[:8],
                         value_model=ValueModel.from_causal_lm(model), labeler=SimulatedLabeler())
    history = trainer.train(progress=False)
    ptx = history["ppo/ptx_loss"][0]
    assert 0.2 < ptx < 3.0, ptx  # the base model's own next-token loss on its corpus is about 0.64


def test_policy_step_moves_only_the_policy_and_value_step_only_the_critic(tiny):
    # Two networks, two optimizers, two losses (Spinning Up's PPO): neither step touches the other network
    model, tok = copy.deepcopy(tiny[0]), tiny[1]
    config = PPOConfig(batch_size=8, minibatch_size=8, seed=0, max_new_tokens=8)
    trainer = PPOTrainer(model, tok, LengthPenalty(), config, prompts=list(load_split("ppo")["prompt"])[:8],
                         value_model=ValueModel.from_causal_lm(model), labeler=SimulatedLabeler())
    batch, _ = trainer.make_batch(trainer.next_prompts())
    idx = torch.arange(8)

    def snapshot():
        return ([p.detach().clone() for p in trainer.policy.parameters()],
                [p.detach().clone() for p in trainer.value_model.parameters()])

    def moved(before, after):
        return any(not torch.equal(a, b) for a, b in zip(before, after))

    policy0, critic0 = snapshot()
    stats = trainer.policy_step(batch, idx)
    policy1, critic1 = snapshot()
    assert moved(policy0, policy1) and not moved(critic0, critic1)
    assert set(stats) == {"policy/loss", "policy/clipfrac", "policy/approx_kl", "policy/entropy"}
    stats = trainer.value_step(batch, idx)
    policy2, critic2 = snapshot()
    assert moved(critic1, critic2) and not moved(policy1, policy2)
    assert set(stats) == {"value/loss", "value/clipfrac"} and stats["value/loss"] > 0


def test_value_coef_scales_the_loss_the_critic_steps_on(tiny, monkeypatch):
    # With its own Adam the scale acts through the gradient clip (README, "What each setting bought")
    from rlhf_core.stages import ppo as ppo_module

    model, tok = copy.deepcopy(tiny[0]), tiny[1]
    config = PPOConfig(batch_size=8, minibatch_size=8, seed=0, max_new_tokens=8, value_coef=0.25)
    trainer = PPOTrainer(model, tok, LengthPenalty(), config, prompts=list(load_split("ppo")["prompt"])[:8],
                         value_model=ValueModel.from_causal_lm(model), labeler=SimulatedLabeler())
    batch, _ = trainer.make_batch(trainer.next_prompts())
    stepped = []
    monkeypatch.setattr(ppo_module, "gradient_step", lambda loss, model, *args: stepped.append((loss.item(), model)))
    stats = trainer.value_step(batch, torch.arange(8))
    assert stepped[0][1] is trainer.value_model
    assert stepped[0][0] == pytest.approx(0.25 * stats["value/loss"], rel=1e-6)


def test_ptx_windows_follow_the_config(tiny, monkeypatch):
    model, tok = copy.deepcopy(tiny[0]), tiny[1]
    config = PPOConfig(batch_size=8, minibatch_size=8, ptx_coef=1.0, ptx_batch_size=3, ptx_seq_len=16,
                       ptx_documents=40, seed=0)
    trainer = PPOTrainer(model, tok, LengthPenalty(), config, prompts=list(load_split("ppo")["prompt"])[:8],
                         value_model=ValueModel.from_causal_lm(model), labeler=SimulatedLabeler())
    documents = list(load_split("pretrain")["text"][:40])
    assert len(trainer.pretrain_stream) == sum(len(tok(d)["input_ids"]) + 1 for d in documents)  # + EOS each
    seen = []
    original = trainer.policy.forward
    monkeypatch.setattr(trainer.policy, "forward", lambda **kw: seen.append(kw["input_ids"].shape) or original(**kw))
    assert torch.isfinite(trainer.ptx_loss()) and seen == [torch.Size([3, 16])]


def test_make_batch_is_sample_score_advantages_and_caps_the_score_of_cut_off_answers(tiny):
    model, tok = copy.deepcopy(tiny[0]), tiny[1]
    prompts = list(load_split("ppo")["prompt"])[:16]

    def trainer():  # 6 tokens: most answers are cut, a few end (13-15 of 16 cut on seeds 0-5)
        config = PPOConfig(batch_size=16, max_new_tokens=6, missing_eos_max_score=-4.9, seed=0)
        torch.manual_seed(0)  # the same fresh value head for both trainers
        return PPOTrainer(copy.deepcopy(model), tok, LengthPenalty(), config, prompts=prompts, ref_model=model,
                          value_model=ValueModel.from_causal_lm(model), labeler=SimulatedLabeler())

    batch, texts = trainer().make_batch(prompts)
    stepwise = trainer()
    rollout = stepwise.sample(prompts)
    ref_logprobs, scores, values = stepwise.score(rollout)
    again = stepwise.advantages(rollout, ref_logprobs, scores, values)
    assert torch.equal(batch.rollout.response_ids, again.rollout.response_ids) and texts == rollout.texts(tok)
    assert torch.allclose(batch.advantages, again.advantages) and torch.allclose(batch.returns, again.returns)
    cut = ~rollout.ended_with_eos(tok.eos_token_id)
    assert cut.any() and not cut.all()
    raw = LengthPenalty()(*rollout.sequences())
    assert (raw[cut] > -4.9).any() and (raw[cut] < -4.9).any(), "the cap should bind on some answers, not all"
    assert torch.equal(scores[cut], raw[cut].clamp(max=-4.9))  # a cut-off answer scores at most the cap
    assert torch.equal(scores[~cut], raw[~cut])                 # finished answers keep their score


def test_the_ppo_benchmark_times_every_phase(capsys):
    import benchmarks.ppo_iteration as benchmark

    benchmark.main(["--iterations", "1"])
    printed = capsys.readouterr().out
    for phase in ("generation", "scoring", "gae", "ppo_epochs", "total", "episodes/s", "peak memory"):
        assert phase in printed, printed


def test_the_gpu_benchmark_says_what_to_do_without_a_gpu_and_times_ppo_with_one(monkeypatch, capsys):
    import benchmarks.gpu as benchmark

    monkeypatch.delenv("RLHF_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit, match=r"No GPU here.*--device cpu --quick"):
        benchmark.main([])
    # the PPO part on the CPU, with the tiny model standing in for GPT-2 small (124M takes a minute here)
    monkeypatch.setattr(benchmark, "gpt2_small", lambda device: (*load_base("tiny", device=device), "the tiny model"))
    monkeypatch.setenv("RLHF_DEVICE", "cpu")  # what --device cpu sets, restored after the test
    benchmark.main(["--device", "cpu", "--quick", "--skip-pipeline"])
    printed = capsys.readouterr().out
    assert "device: cpu" in printed and "PPO at GPT-2 small's size" in printed, printed
    assert "episodes/s" in printed and "peak RSS" in printed, printed


def test_the_reward_step_benchmark_times_every_layout(capsys):
    import benchmarks.reward_step as benchmark

    benchmark.main(["--steps", "1", "--answers", "base"])  # base-model answers: no SFT training in a unit test
    printed = capsys.readouterr().out
    assert all(layout in printed for layout in ("padded", "chunked", "shared prompt", "x padded")), printed


def test_the_dpo_step_benchmark_times_both_layouts(capsys):
    import benchmarks.dpo_step as benchmark

    benchmark.main(["--steps", "1", "--answers", "base"])  # base-model answers: no SFT training in a unit test
    printed = capsys.readouterr().out
    assert all(layout in printed for layout in ("own rows", "shared prompt", "x own rows")), printed


def test_the_dev_lever_check_pairs_every_lever_with_the_default(tmp_path, capsys):
    """benchmarks/dev_levers.py --quick: a row per lever, its win rates in [0, 1]; a lever that leaves the reward model
    alone reuses the default's (no seconds, the same held-out accuracy); --eval judges the published runs on eval;
    a lever it does not know, or --eval without a published run, is refused."""
    import benchmarks.dev_levers as benchmark

    out = tmp_path / "seed-0.json"
    benchmark.main(["--seed", "0", "--quick", "--answers", "1", "--eval", "--out", str(out)])
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    assert result["quick"] and set(result["levers"]) == set(benchmark.LEVERS) and result["base_model"] == "tiny"
    assert set(result["false_fact_rate"]) == {"base", "sft"}
    assert all(0 <= rate <= 1 for rate in result["false_fact_rate"].values()), result["false_fact_rate"]
    assert [lever for lever, row in result["levers"].items() if "eval" in row] == list(benchmark.PUBLISHED)
    assert 0 <= result["levers"]["default"]["eval"]["vs_base"] <= 1 and "seed 0          default: on eval" in printed
    assert result["levers"]["default"]["eval"]["gold"] != result["levers"]["default"]["gold"]  # other prompts
    # paired answers: one model judged twice gets the same scores, so it ties itself on every answer
    base, tokenizer = load_base("tiny")
    prompts = list(load_split("dev")["prompt"])[:8]
    twice = [benchmark.gold_scores(base, tokenizer, prompts, 2, 0, SimulatedLabeler(seed=0)) for _ in range(2)]
    assert len(twice[0]) == 16 and twice[0] == twice[1] and win_rate(*twice).rate == 0.5
    for lever, row in result["levers"].items():
        assert f"seed 0 {lever:>16}: vs base" in printed, printed
        assert 0 <= row["vs_base"] <= 1 and 0 <= row["vs_sft"] <= 1 and row["kl"] == row["kl"], row  # not NaN
        assert row["ppo_seconds"] > 0 and 0 <= row["false_fact_rate"] <= 1
    default = result["levers"]["default"]
    assert default["rm_seconds"] > 0
    for shared in ("ppo_minibatch32", "perfect_reward"):
        assert result["levers"][shared]["rm_seconds"] == 0
        assert result["levers"][shared]["rm_heldout_accuracy"] == default["rm_heldout_accuracy"]
    with pytest.raises(SystemExit):
        benchmark.main(["--seed", "0", "--levers", "default,no_such_lever", "--out", str(out)])
    assert "no_such_lever" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        benchmark.main(["--seed", "0", "--levers", "rm_batch16", "--eval", "--out", str(out)])
    assert "include default or perfect_reward" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        benchmark.main(["--seed", "0", "--answers", "0", "--out", str(out)])
    assert "at least 1 answer" in capsys.readouterr().err


def test_the_trl_benchmark_runs_rlhf_cores_side_without_trl():
    """benchmarks/ppo_vs_trl.py: the course's side needs nothing beyond requirements.txt, and never imports trl."""
    import sys

    import benchmarks.ppo_vs_trl as benchmark

    seconds, tokens, setup_mb = benchmark.run_rlhf_core("tiny", iterations=1)
    assert len(seconds) == 1 and seconds[0] > 0 and setup_mb > 0
    # The PPO epochs' passes only, each episode once per epoch, in minibatches of 16 rows: every row is at least the
    # shortest prompt and one token, at most the longest prompt and max_new_tokens (one epoch, or a count of the
    # no-grad sampling and scoring passes too, falls outside).
    _, tokenizer, _, prompts = benchmark.build_models("tiny")
    prompt_lengths = [len(ids) for ids in tokenizer(prompts, add_special_tokens=False)["input_ids"]]
    rows = benchmark.EPOCHS * benchmark.EPISODES
    assert len(tokens) == 1 and tokens[0] % benchmark.MINIBATCH == 0
    assert rows * (min(prompt_lengths) + 1) <= tokens[0] <= rows * (max(prompt_lengths) + benchmark.MAX_NEW_TOKENS)
    assert "trl" not in sys.modules


def test_the_trl_benchmarks_token_counter_counts_passes_with_gradients_only(tiny):
    import benchmarks.ppo_vs_trl as benchmark

    model = copy.deepcopy(tiny[0])
    counter = benchmark.TokenCounter(model)
    ids = torch.ones(3, 5, dtype=torch.long)
    with torch.no_grad():
        model(input_ids=ids, attention_mask=torch.ones_like(ids))  # sampling and scoring: not counted
    assert counter.total == 0
    model(input_ids=ids, attention_mask=torch.ones_like(ids))
    model(ids[:2])                                                  # positional input_ids count too
    assert counter.total == 15 + 10


# --------------------------------------------------------------------------------------------------
# Beyond PPO (notebook 07): the critic-free RLOO run, DPO, the rankings kept beside the reward model
# --------------------------------------------------------------------------------------------------

def test_rloo_shortens_answers_without_a_critic(tiny):
    """The same length-penalty task as PPO's test, with advantage="rloo": no value model, k answers per prompt."""
    model, tok = copy.deepcopy(tiny[0]), tiny[1]
    config = PPOConfig(iterations=8, batch_size=32, minibatch_size=16, ppo_epochs=4, lr=3e-4, init_kl_coef=0.01,
                       max_new_tokens=24, missing_eos_max_score=None, advantage="rloo", samples_per_prompt=4, seed=0)
    trainer = PPOTrainer(model, tok, LengthPenalty(center=30), config, prompts=list(load_split("ppo")["prompt"])[:64],
                         labeler=SimulatedLabeler())
    assert trainer.value_model is None
    prompts = trainer.next_prompts()
    assert len(prompts) == 32 and all(len(set(prompts[i:i + 4])) == 1 for i in range(0, 32, 4))
    assert len(set(prompts)) == 8, "each rollout holds batch_size / k different prompts"
    history = trainer.train(progress=False)
    lengths = history["objective/length"]
    assert lengths[-1] < 0.7 * lengths[0], lengths
    assert history["objective/score"][-1] > history["objective/score"][0] + 1.0, history["objective/score"]
    assert "value/loss" not in history and history["objective/kl"][0] == pytest.approx(0.0, abs=1e-4)


def test_rloo_advantages_are_each_answers_return_against_the_prompts_other_answers(tiny):
    model, tok = copy.deepcopy(tiny[0]), tiny[1]
    config = PPOConfig(batch_size=12, minibatch_size=6, advantage="rloo", samples_per_prompt=3,
                       missing_eos_max_score=None, seed=0)
    trainer = PPOTrainer(model, tok, LengthPenalty(center=30), config, prompts=list(load_split("ppo")["prompt"])[:8],
                         labeler=SimulatedLabeler())
    batch, _ = trainer.make_batch(trainer.next_prompts())
    mask = batch.rollout.response_mask
    returns = batch.rewards.sum(1).tolist()
    raw = [returns[i] - sum(returns[j] for j in range(i // 3 * 3, i // 3 * 3 + 3) if j != i) / 2 for i in range(12)]
    raw = torch.tensor(raw)[:, None].expand_as(mask)                          # the same advantage at every token
    mean, std = raw[mask].mean(), raw[mask].std()
    assert torch.allclose(batch.advantages[mask], (raw[mask] - mean) / std, atol=1e-4)  # whitened, as PPO's
    assert (batch.advantages[~mask] == 0).all() and (batch.values == 0).all()


def test_ppo_config_refuses_settings_that_cannot_work():
    with pytest.raises(ValueError, match="samples_per_prompt >= 2"):
        PPOConfig(advantage="rloo")
    with pytest.raises(ValueError, match="divide batch_size"):
        PPOConfig(batch_size=64, samples_per_prompt=3)
    with pytest.raises(ValueError, match="'gae', 'rloo'"):
        PPOConfig(advantage="grpo")


def test_rloo_refuses_a_critic(tiny):
    model, tok = copy.deepcopy(tiny[0]), tiny[1]
    config = PPOConfig(batch_size=8, advantage="rloo", samples_per_prompt=4)
    with pytest.raises(ValueError, match="no critic"):
        PPOTrainer(model, tok, LengthPenalty(), config, value_model=ValueModel.from_causal_lm(model))


def _length_rankings(n=40, seed=0):
    """Rankings of K = 3 answers that prefer shorter ones: a preference DPO can learn in a few steps."""
    rng, tasks = random.Random(seed), all_tasks()
    comps = []
    for task in rng.sample(tasks, n):
        short = ideal_response(task, rng)
        comps.append({"prompt": task.prompt, "responses": [short, short + " " + short, (short + " ") * 3],
                      "gold": [9.0, 6.0, 3.0]})
    return comps


def test_dpo_learns_the_rankings_preference_and_its_implicit_reward_ranks_held_out_pairs(tiny):
    from rlhf_core.stages.dpo import DPOConfig, implicit_reward_accuracy, train_dpo

    sft, tok = tiny
    train, heldout = _length_rankings(48, seed=0), _length_rankings(24, seed=1)
    policy = copy.deepcopy(sft)
    before = implicit_reward_accuracy(policy, sft, tok, heldout, beta=0.1)
    assert before == 0.0, "the policy is its reference: every implicit reward is 0, every pair a tie"
    log = train_dpo(policy, sft, tok, train, DPOConfig(beta=0.1, lr=3e-4, epochs=2, batch_size=8), progress=False)
    after = implicit_reward_accuracy(policy, sft, tok, heldout, beta=0.1)
    assert after > 0.8, after
    assert log["dpo/loss"][0] == pytest.approx(math.log(2), abs=1e-4) and log["dpo/loss"][-1] < 0.5 * math.log(2)
    assert log["dpo/margin"][-1] > 0 and len(log["step"]) == 12
    assert all(not p.requires_grad for p in sft.parameters()), "the reference stays frozen"


def test_dpo_pairs_skip_identical_answers_and_the_loss_matches_a_loop():
    from rlhf_core.stages.dpo import distinct_pairs, ranking_dpo_loss
    from rlhf_core.losses import dpo_loss

    comps = [{"prompt": "p", "responses": ["a", "b", "a"], "gold": [3, 2, 1]},
             {"prompt": "q", "responses": ["c", "d", "e"], "gold": [3, 2, 1]}]
    pairs = distinct_pairs(comps)
    assert pairs.tolist() == [[[False, True, False], [False, False, True], [False, False, False]],
                              [[False, True, True], [False, False, True], [False, False, False]]]
    gen = torch.Generator().manual_seed(0)
    policy, ref = torch.randn(2, 3, generator=gen), torch.randn(2, 3, generator=gen)
    loss, rewards = ranking_dpo_loss(policy, ref, pairs, beta=0.5)
    terms = [dpo_loss(policy[b, i:i + 1], policy[b, j:j + 1], ref[b, i:i + 1], ref[b, j:j + 1], 0.5)[0]
             for b in range(2) for i in range(3) for j in range(3) if pairs[b, i, j]]
    assert loss.item() == pytest.approx(sum(t.item() for t in terms) / len(terms), rel=1e-6)
    assert torch.allclose(rewards, 0.5 * (policy - ref))


def test_the_reward_model_keeps_its_rankings_and_load_comparisons_reads_them(tmp_path, monkeypatch, tiny):
    from rlhf_core.common import paths
    from rlhf_core.stages.reward import COMPARISONS_FILE, load_comparisons, save_reward_model

    monkeypatch.setattr(paths, "RUNS_DIR", tmp_path)
    model, tok = tiny
    comps = _length_rankings(4)
    torch.manual_seed(0)
    path = save_reward_model(RewardModel.from_causal_lm(model), "tiny", RewardConfig(), comps)
    lines = (path / COMPARISONS_FILE).read_text().splitlines()
    assert [json.loads(line) for line in lines] == comps
    monkeypatch.setattr(reward, "load_or_train_reward_model", lambda *args, **kwargs: None)  # the folder is there
    assert load_comparisons("tiny") == comps
    (path / COMPARISONS_FILE).write_text('{"prompt": "p"}\n')
    with pytest.raises(ValueError, match="does not hold rankings"):
        load_comparisons("tiny")
    (path / COMPARISONS_FILE).write_text("not json\n")
    with pytest.raises(ValueError, match="not valid JSON lines"):
        load_comparisons("tiny")


def test_dpo_config_refuses_settings_that_cannot_work():
    from rlhf_core.stages.dpo import DPOConfig

    with pytest.raises(ValueError, match="beta > 0"):
        DPOConfig(beta=0)
    with pytest.raises(ValueError, match="epochs >= 1"):
        DPOConfig(epochs=0)


def test_dpo_reads_the_frozen_reference_once_and_learns_the_same_with_it_given(tiny):
    from rlhf_core.stages.dpo import DPOConfig, answer_logprobs, implicit_rewards, ranking_logprobs, train_dpo

    sft, tok = tiny
    comps = _length_rankings(20, seed=2)
    ref = ranking_logprobs(sft, tok, comps, batch_size=7)
    assert torch.allclose(ref, torch.cat([answer_logprobs(sft, tok, [c]) for c in comps]).detach(), atol=1e-4)
    logs = []
    for given in (None, ref):
        policy = copy.deepcopy(sft)
        logs.append(train_dpo(policy, sft, tok, comps, DPOConfig(lr=3e-4, batch_size=4), progress=False,
                              ref_logps=given))
    assert logs[0]["dpo/loss"] == pytest.approx(logs[1]["dpo/loss"], abs=1e-3)
    assert torch.allclose(implicit_rewards(policy, sft, tok, comps, 0.1), implicit_rewards(policy, sft, tok, comps, 0.1,
                                                                                           ref), atol=1e-4)
    with pytest.raises(ValueError, match="ranking_logprobs of these"):
        train_dpo(copy.deepcopy(sft), sft, tok, comps, DPOConfig(), progress=False, ref_logps=ref[:5])
