"""Typical mistakes in the exercises, and correct implementations written another way.

``WRONG[check]`` lists (implementation, diagnosis) pairs: the check ``rlhf_core.notebook.exercises.check_<check>``
must reject the implementation with an ``AssertionError`` whose message matches the regex
``diagnosis`` — so a check that rejects for the wrong reason is caught too. ``CORRECT[check]`` lists
implementations the check must accept: plain loops, other vectorisations, other but equivalent
formulas. Each is written the way a student might, with the reference's signature.
"""

from __future__ import annotations

import itertools
import math
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

CHECK_NAMES = ("temperature_probs", "sft_loss", "ranking_loss", "rlhf_rewards", "kl_per_token", "compute_gae",
               "whiten", "ppo_policy_loss", "value_loss", "kl_controller", "win_rate", "best_of_n_kl",
               "dpo_loss", "rloo_advantages", "grpo_advantages")
WRONG: dict[str, list[tuple[Callable, str]]] = {name: [] for name in CHECK_NAMES}
CORRECT: dict[str, list[Callable]] = {name: [] for name in CHECK_NAMES}


def wrong(check: str, diagnosis: str):
    """Register a wrong implementation for ``check`` and the regex its diagnosis must match."""
    def register(fn):
        WRONG[check].append((fn, diagnosis))
        return fn
    return register


def correct(check: str):
    def register(fn):
        CORRECT[check].append(fn)
        return fn
    return register


def _masked_mean(x, mask):
    return torch.where(mask, x, 0.0).sum() / mask.sum()


# --------------------------------------------------------------------------------------------------
# temperature_probs(logits, temperature) -> softmax(logits / T) over the vocabulary
# --------------------------------------------------------------------------------------------------

def _refuse(temperature):
    if temperature <= 0:
        raise ValueError("temperature must be > 0")


@correct("temperature_probs")
def temperature_loop(logits, temperature):
    _refuse(temperature)
    out = torch.empty_like(logits)
    for b in range(logits.shape[0]):
        top = (logits[b] / temperature).max()
        weights = torch.exp(logits[b] / temperature - top)
        out[b] = weights / weights.sum()
    return out


@correct("temperature_probs")
def temperature_power_renormalised(logits, temperature):
    _refuse(temperature)
    powered = F.softmax(logits, dim=-1) ** (1 / temperature)     # p^(1/T) ∝ exp(logit / T)
    return powered / powered.sum(-1, keepdim=True)


@correct("temperature_probs")
def temperature_greedy_at_zero(logits, temperature):
    if temperature < 0:
        raise ValueError("temperature must be ≥ 0")
    if temperature == 0:                                          # the T → 0 limit: greedy
        return F.one_hot(logits.argmax(-1), logits.shape[-1]).to(logits.dtype)
    return F.log_softmax(logits.float() / temperature, dim=-1).exp()


@correct("temperature_probs")
def temperature_assert(logits, temperature):
    assert temperature > 0, "temperature must be positive"
    return torch.softmax(logits / temperature, -1)


@wrong("temperature_probs", r"multiply the logits by T: divide them")
def temperature_multiplied(logits, temperature):
    _refuse(temperature)
    return F.softmax(logits * temperature, dim=-1)


@wrong("temperature_probs", r"softmax must be over the vocabulary, the last dim")
def temperature_softmax_over_batch(logits, temperature):
    _refuse(temperature)
    return F.softmax(logits / temperature, dim=0)


@wrong("temperature_probs", r"power 1/T but do not renormalise")
def temperature_power_not_renormalised(logits, temperature):
    _refuse(temperature)
    return F.softmax(logits, dim=-1) ** (1 / temperature)


@wrong("temperature_probs", r"divide the probabilities by T after the softmax")
def temperature_after_softmax(logits, temperature):
    _refuse(temperature)
    return F.softmax(logits, dim=-1) / temperature


@wrong("temperature_probs", r"return log-probabilities")
def temperature_log_softmax(logits, temperature):
    _refuse(temperature)
    return F.log_softmax(logits / temperature, dim=-1)


@wrong("temperature_probs", r"return the scaled logits, logits / T: apply the softmax")
def temperature_no_softmax(logits, temperature):
    _refuse(temperature)
    return logits / temperature


@wrong("temperature_probs", r"temperature is ignored")
def temperature_added(logits, temperature):
    _refuse(temperature)
    return F.softmax(logits + temperature, dim=-1)


@wrong("temperature_probs", r"changed the logits passed to it")
def temperature_in_place(logits, temperature):
    _refuse(temperature)
    logits /= temperature
    return F.softmax(logits, dim=-1)


@wrong("temperature_probs", r"exp\(logits / T\) overflows.*F\.softmax")
def temperature_naive_exp(logits, temperature):
    _refuse(temperature)
    weights = torch.exp(logits / temperature)
    return weights / weights.sum(-1, keepdim=True)


@wrong("temperature_probs", r"temperature_probs\(logits, 0\) returned NaN.*Raise a ValueError")
def temperature_no_guard(logits, temperature):
    return F.softmax(logits / temperature, dim=-1)


@wrong("temperature_probs", r"negative temperature turns the ranking upside down")
def temperature_guards_only_zero(logits, temperature):
    if temperature == 0:
        raise ZeroDivisionError("temperature 0")
    return F.softmax(logits / temperature, dim=-1)


# --------------------------------------------------------------------------------------------------
# sft_loss(logits, input_ids, response_mask)
# --------------------------------------------------------------------------------------------------

@correct("sft_loss")
def sft_loop(logits, input_ids, response_mask):
    total, count = 0.0, 0
    for b in range(logits.shape[0]):
        for t in range(1, logits.shape[1]):
            if response_mask[b, t]:
                total = total - F.log_softmax(logits[b, t - 1], dim=-1)[input_ids[b, t]]
                count += 1
    return total / count


@correct("sft_loss")
def sft_gather_float_mask(logits, input_ids, response_mask):
    logp = F.log_softmax(logits[:, :-1], dim=-1).gather(-1, input_ids[:, 1:, None])[..., 0]   # (B, L-1)
    weights = response_mask[:, 1:].float()
    return -(logp * weights).sum() / weights.sum()


@correct("sft_loss")
def sft_cross_entropy_per_token(logits, input_ids, response_mask):
    per_token = F.cross_entropy(logits[:, :-1].transpose(1, 2), input_ids[:, 1:], reduction="none")
    return _masked_mean(per_token, response_mask[:, 1:])


@correct("sft_loss")
def sft_ignore_index(logits, input_ids, response_mask):
    labels = input_ids.masked_fill(~response_mask, -100)              # the Hugging Face convention
    return F.cross_entropy(logits[:, :-1].transpose(1, 2), labels[:, 1:], ignore_index=-100)


@wrong("sft_loss", r"off by one")
def sft_no_shift(logits, input_ids, response_mask):
    return F.cross_entropy(logits[response_mask], input_ids[response_mask])


@wrong("sft_loss", r"first demonstration token is not a target")
def sft_mask_not_shifted(logits, input_ids, response_mask):
    targets = response_mask[:, :-1]
    return F.cross_entropy(logits[:, :-1][targets], input_ids[:, 1:][targets])


@wrong("sft_loss", r"outside response_mask")
def sft_all_tokens(logits, input_ids, response_mask):
    V = logits.shape[-1]
    return F.cross_entropy(logits[:, :-1].reshape(-1, V), input_ids[:, 1:].reshape(-1))


@wrong("sft_loss", r"sum")
def sft_sum(logits, input_ids, response_mask):
    targets = response_mask[:, 1:]
    return F.cross_entropy(logits[:, :-1][targets], input_ids[:, 1:][targets], reduction="sum")


@wrong("sft_loss", r"averages each demonstration first")
def sft_mean_per_row(logits, input_ids, response_mask):
    per_token = F.cross_entropy(logits[:, :-1].transpose(1, 2), input_ids[:, 1:], reduction="none")
    targets = response_mask[:, 1:]
    return (torch.where(targets, per_token, 0.0).sum(1) / targets.sum(1)).mean()


@wrong("sft_loss", r"negative.*flip the sign")
def sft_log_likelihood(logits, input_ids, response_mask):
    targets = response_mask[:, 1:]
    return -F.cross_entropy(logits[:, :-1][targets], input_ids[:, 1:][targets])


@wrong("sft_loss", r"softmax must be over the vocabulary")
def sft_softmax_over_positions(logits, input_ids, response_mask):
    logp = F.log_softmax(logits, dim=1)[:, :-1].gather(-1, input_ids[:, 1:, None])[..., 0]
    return -_masked_mean(logp, response_mask[:, 1:])


@wrong("sft_loss", r"log\(softmax\(x\)\) underflows")
def sft_log_of_softmax(logits, input_ids, response_mask):
    probs = torch.softmax(logits[:, :-1], dim=-1).gather(-1, input_ids[:, 1:, None])[..., 0]
    return -_masked_mean(torch.log(probs), response_mask[:, 1:])


# --------------------------------------------------------------------------------------------------
# ranking_loss(rewards, mask)
# --------------------------------------------------------------------------------------------------

@correct("ranking_loss")
def ranking_combinations(rewards, mask=None):
    mask = torch.ones_like(rewards, dtype=torch.bool) if mask is None else mask
    per_prompt = []
    for row, valid in zip(rewards, mask):
        ranked = row[valid]                                   # best first
        pairs = list(itertools.combinations(range(len(ranked)), 2))
        per_prompt.append(sum(-F.logsigmoid(ranked[i] - ranked[j]) for i, j in pairs) / len(pairs))
    return torch.stack(per_prompt).mean()


@correct("ranking_loss")
def ranking_softplus(rewards, mask=None):
    mask = torch.ones_like(rewards, dtype=torch.bool) if mask is None else mask
    rewards = torch.where(mask, rewards, 0.0)
    K = rewards.shape[1]
    margin = rewards[:, :, None] - rewards[:, None, :]
    is_pair = torch.triu(torch.ones(K, K, dtype=torch.bool), 1) & mask[:, :, None] & mask[:, None, :]
    loss = torch.where(is_pair, F.softplus(-margin), 0.0).sum((1, 2))
    return (loss / is_pair.sum((1, 2))).mean()


def _pair_terms(rewards, mask, pair_loss=lambda m: -F.logsigmoid(m)):
    """(B, K, K) loss of each pair i < j of valid completions (0 elsewhere), and the pair mask."""
    K = rewards.shape[1]
    rewards = torch.where(mask, rewards, 0.0)
    margin = rewards[:, :, None] - rewards[:, None, :]
    is_pair = torch.triu(torch.ones(K, K, dtype=torch.bool), 1) & mask[:, :, None] & mask[:, None, :]
    return torch.where(is_pair, pair_loss(margin), 0.0), is_pair


@wrong("ranking_loss", r"sign of the margin")
def ranking_flipped_margin(rewards, mask=None):
    terms, is_pair = _pair_terms(rewards, mask, lambda m: -F.logsigmoid(-m))
    return (terms.sum((1, 2)) / is_pair.sum((1, 2))).mean()


@wrong("ranking_loss", r"log\(sigmoid\(x\)\) underflows for margins of -?−?100")
def ranking_log_of_sigmoid(rewards, mask=None):
    terms, is_pair = _pair_terms(rewards, mask, lambda m: -torch.log(torch.sigmoid(m)))
    return (terms.sum((1, 2)) / is_pair.sum((1, 2))).mean()


@wrong("ranking_loss", r"log\(sigmoid\(x\)\) underflows")
def ranking_softplus_by_hand(rewards, mask=None):
    terms, is_pair = _pair_terms(rewards, mask, lambda m: torch.log(1 + torch.exp(-m)))
    return (terms.sum((1, 2)) / is_pair.sum((1, 2))).mean()


@wrong("ranking_loss", r"mean must be over prompts, each prompt's pairs averaged first")
def ranking_mean_over_all_pairs(rewards, mask=None):
    terms, is_pair = _pair_terms(rewards, mask)
    return terms.sum() / is_pair.sum()


@wrong("ranking_loss", r"divide by the number of pairs C\(K,2\)")
def ranking_sum_of_pairs(rewards, mask=None):
    terms, _ = _pair_terms(rewards, mask)
    return terms.sum((1, 2)).mean()


@wrong("ranking_loss", r"You divide by K")
def ranking_divide_by_k(rewards, mask=None):
    terms, _ = _pair_terms(rewards, mask)
    return (terms.sum((1, 2)) / mask.sum(1)).mean()


@wrong("ranking_loss", r"sum over the 2 prompts")
def ranking_sum_over_prompts(rewards, mask=None):
    terms, is_pair = _pair_terms(rewards, mask)
    return (terms.sum((1, 2)) / is_pair.sum((1, 2))).sum()


@wrong("ranking_loss", r"padding leaks")
def ranking_ignores_mask(rewards, mask=None):
    terms, is_pair = _pair_terms(rewards, torch.ones_like(rewards, dtype=torch.bool))
    return (terms.sum((1, 2)) / is_pair.sum((1, 2))).mean()


@wrong("ranking_loss", r"only neighbouring completions")
def ranking_neighbours_only(rewards, mask=None):
    neighbours = mask[:, :-1] & mask[:, 1:]
    terms = torch.where(neighbours, -F.logsigmoid(rewards[:, :-1] - rewards[:, 1:]), 0.0)
    return (terms.sum(1) / neighbours.sum(1)).mean()


# --------------------------------------------------------------------------------------------------
# rlhf_rewards(scores, logprobs, ref_logprobs, mask, kl_coef)
# --------------------------------------------------------------------------------------------------

@correct("rlhf_rewards")
def rewards_loop(scores, logprobs, ref_logprobs, mask, kl_coef):
    rewards = torch.zeros_like(logprobs)
    for b in range(mask.shape[0]):
        n = int(mask[b].sum())
        for t in range(n):
            rewards[b, t] = -kl_coef * (logprobs[b, t] - ref_logprobs[b, t])
        rewards[b, n - 1] += scores[b]
    return rewards


@correct("rlhf_rewards")
def rewards_scatter(scores, logprobs, ref_logprobs, mask, kl_coef):
    kl = torch.where(mask, logprobs - ref_logprobs, 0.0)
    last = mask.sum(1, keepdim=True) - 1                                   # (B, 1)
    return -kl_coef * kl + torch.zeros_like(kl).scatter(1, last, scores[:, None])


@correct("rlhf_rewards")
def rewards_float32_buffer(scores, logprobs, ref_logprobs, mask, kl_coef):
    rewards = torch.zeros(mask.shape)                                   # float32, whatever the inputs
    for b, t in mask.nonzero().tolist():
        rewards[b, t] = -kl_coef * (logprobs[b, t] - ref_logprobs[b, t])
        if t == int(mask[b].sum()) - 1:
            rewards[b, t] += scores[b]
    return rewards


def _kl_penalty(logprobs, ref_logprobs, mask, kl_coef):
    return torch.where(mask, -kl_coef * (logprobs - ref_logprobs), 0.0)


@wrong("rlhf_rewards", r"last \*valid\* token, not the last column")
def rewards_score_at_last_column(scores, logprobs, ref_logprobs, mask, kl_coef):
    rewards = _kl_penalty(logprobs, ref_logprobs, mask, kl_coef)
    rewards[:, -1] += scores
    return rewards


@wrong("rlhf_rewards", r"off by one: the last valid token")
def rewards_score_off_by_one(scores, logprobs, ref_logprobs, mask, kl_coef):
    rewards = _kl_penalty(logprobs, ref_logprobs, mask, kl_coef)
    rewards[torch.arange(len(scores)), mask.sum(1)] += scores       # one past the end
    return rewards


@wrong("rlhf_rewards", r"added to every token")
def rewards_score_everywhere(scores, logprobs, ref_logprobs, mask, kl_coef):
    return torch.where(mask, _kl_penalty(logprobs, ref_logprobs, mask, kl_coef) + scores[:, None], 0.0)


@wrong("rlhf_rewards", r"last valid token")
def rewards_score_at_first_token(scores, logprobs, ref_logprobs, mask, kl_coef):
    rewards = _kl_penalty(logprobs, ref_logprobs, mask, kl_coef)
    rewards[:, 0] += scores
    return rewards


@wrong("rlhf_rewards", r"KL penalty has the wrong sign: a token more likely under the policy")
def rewards_kl_sign_flipped(scores, logprobs, ref_logprobs, mask, kl_coef):
    rewards = _kl_penalty(ref_logprobs, logprobs, mask, kl_coef)
    rewards[torch.arange(len(scores)), mask.sum(1) - 1] += scores
    return rewards


@wrong("rlhf_rewards", r"score replaces the KL penalty")
def rewards_score_replaces_penalty(scores, logprobs, ref_logprobs, mask, kl_coef):
    rewards = _kl_penalty(logprobs, ref_logprobs, mask, kl_coef)
    rewards[torch.arange(len(scores)), mask.sum(1) - 1] = scores
    return rewards


@wrong("rlhf_rewards", r"not scaled by kl_coef")
def rewards_without_kl_coef(scores, logprobs, ref_logprobs, mask, kl_coef):
    rewards = _kl_penalty(logprobs, ref_logprobs, mask, 1.0)
    rewards[torch.arange(len(scores)), mask.sum(1) - 1] += scores
    return rewards


@wrong("rlhf_rewards", r"per-token penalty, k1")
def rewards_k3_penalty(scores, logprobs, ref_logprobs, mask, kl_coef):
    log_r = ref_logprobs - logprobs
    rewards = torch.where(mask, -kl_coef * (torch.expm1(log_r) - log_r), 0.0)
    rewards[torch.arange(len(scores)), mask.sum(1) - 1] += scores
    return rewards


@wrong("rlhf_rewards", r"rewards at padded positions are not 0")
def rewards_padding_not_zeroed(scores, logprobs, ref_logprobs, mask, kl_coef):
    rewards = -kl_coef * (logprobs - ref_logprobs)
    rewards[torch.arange(len(scores)), mask.sum(1) - 1] += scores
    return rewards


# --------------------------------------------------------------------------------------------------
# kl_per_token(logprobs, ref_logprobs, estimator)
# --------------------------------------------------------------------------------------------------

@correct("kl_per_token")
def kl_expm1(logprobs, ref_logprobs, estimator="k1"):
    log_r = ref_logprobs - logprobs
    return {"k1": -log_r, "k2": 0.5 * log_r**2, "k3": torch.expm1(log_r) - log_r}[estimator]


@correct("kl_per_token")
def kl_in_float64(logprobs, ref_logprobs, estimator="k1"):
    log_r = ref_logprobs.double() - logprobs.double()
    if estimator == "k1":
        out = logprobs.double() - ref_logprobs.double()
    elif estimator == "k2":
        out = log_r.square() / 2
    else:
        out = torch.expm1(log_r) - log_r
    return out.to(logprobs.dtype)


@wrong("kl_per_token", r"k3 is (negative somewhere|inaccurate near 0).*torch\.expm1")
def kl_naive_k3(logprobs, ref_logprobs, estimator="k1"):
    log_r = ref_logprobs - logprobs
    return {"k1": -log_r, "k2": 0.5 * log_r**2, "k3": torch.exp(log_r) - 1 - log_r}[estimator]


@wrong("kl_per_token", r"for estimator='k3' you return k1")
def kl_k3_is_k1(logprobs, ref_logprobs, estimator="k1"):
    log_r = ref_logprobs - logprobs
    return 0.5 * log_r**2 if estimator == "k2" else -log_r


@wrong("kl_per_token", r"k1 has the wrong sign")
def kl_k1_flipped(logprobs, ref_logprobs, estimator="k1"):
    log_r = ref_logprobs - logprobs
    return {"k1": log_r, "k2": 0.5 * log_r**2, "k3": torch.expm1(log_r) - log_r}[estimator]


@wrong("kl_per_token", r"log-ratio the wrong way round")
def kl_k3_reversed(logprobs, ref_logprobs, estimator="k1"):
    log_r = logprobs - ref_logprobs                       # log π/π_ref: the wrong way round
    return {"k1": log_r, "k2": 0.5 * log_r**2, "k3": torch.expm1(log_r) - log_r}[estimator]


@wrong("kl_per_token", r"missing the ½")
def kl_k2_without_half(logprobs, ref_logprobs, estimator="k1"):
    log_r = ref_logprobs - logprobs
    return {"k1": -log_r, "k2": log_r**2, "k3": torch.expm1(log_r) - log_r}[estimator]


@wrong("kl_per_token", r"k3 = \(r − 1\) − log r")
def kl_k3_plus_log_r(logprobs, ref_logprobs, estimator="k1"):
    log_r = ref_logprobs - logprobs
    return {"k1": -log_r, "k2": 0.5 * log_r**2, "k3": torch.expm1(log_r) + log_r}[estimator]


# --------------------------------------------------------------------------------------------------
# compute_gae(rewards, values, mask, gamma, lam) -> (advantages, returns)
# --------------------------------------------------------------------------------------------------

@correct("compute_gae")
def gae_python_floats(rewards, values, mask, gamma=1.0, lam=0.95):
    advantages = torch.zeros_like(values)
    for b in range(values.shape[0]):
        n = int(mask[b].sum())
        next_value, next_advantage = 0.0, 0.0
        for t in reversed(range(n)):
            delta = rewards[b, t].item() + gamma * next_value - values[b, t].item()
            next_advantage = delta + gamma * lam * next_advantage
            next_value = values[b, t].item()
            advantages[b, t] = next_advantage
    returns = torch.where(mask, advantages + values, 0.0)
    return advantages, returns


@correct("compute_gae")
def gae_discount_matrix(rewards, values, mask, gamma=1.0, lam=0.95):
    T = values.shape[1]
    values = torch.where(mask, values, 0.0)
    next_values = torch.cat([values[:, 1:], torch.zeros_like(values[:, :1])], 1)
    deltas = torch.where(mask, rewards + gamma * next_values - values, 0.0)          # (B, T)
    k = torch.arange(T)
    power = (k[:, None] - k[None, :]).clamp(min=0).to(values.dtype)               # (T, T): k - t
    discount = torch.where(k[:, None] >= k[None, :], (gamma * lam) ** power, 0.0)  # [k, t]
    advantages = deltas @ discount                                                 # A_t = Σ_k (γλ)^{k-t} δ_k
    return advantages, torch.where(mask, advantages + values, 0.0)


@correct("compute_gae")
def gae_masks_next_value(rewards, values, mask, gamma=1.0, lam=0.95):
    B, T = values.shape
    m = mask.to(values.dtype)
    advantages = torch.zeros_like(values)
    last = torch.zeros(B, dtype=values.dtype)
    for t in reversed(range(T)):
        next_value = values[:, t + 1] * m[:, t + 1] if t + 1 < T else torch.zeros(B, dtype=values.dtype)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last = torch.where(mask[:, t], delta + gamma * lam * last, 0.0)
        advantages[:, t] = last
    return advantages, torch.where(mask, advantages + values, 0.0)


@correct("compute_gae")
def gae_float32_buffer(rewards, values, mask, gamma=1.0, lam=0.95):
    B, T = values.shape
    advantages = torch.zeros(B, T)                                      # float32, whatever the inputs
    for b in range(B):
        n, last = int(mask[b].sum()), 0.0
        for t in reversed(range(n)):
            next_value = values[b, t + 1] if t + 1 < n else 0.0
            last = rewards[b, t] + gamma * next_value - values[b, t] + gamma * lam * last
            advantages[b, t] = last
    returns = torch.where(mask, advantages + values, 0.0)
    return advantages, returns


def _gae_loop(rewards, values, mask, gamma, lam, next_value_of=None, trace=None, forward=False):
    """A template for the mistakes: masked inputs, reset at each row's end, optional twists."""
    rewards, values = torch.where(mask, rewards, 0.0), torch.where(mask, values, 0.0)
    B, T = values.shape
    advantages = torch.zeros_like(values)
    carried = torch.zeros(B, dtype=values.dtype)
    steps = range(T) if forward else reversed(range(T))
    for t in steps:
        if next_value_of is None:
            next_value = values[:, t + 1] if t + 1 < T else torch.zeros(B, dtype=values.dtype)
        else:
            next_value = next_value_of(values, t)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        carried = delta + (gamma * lam if trace is None else trace) * carried
        advantages[:, t] = carried
    advantages = torch.where(mask, advantages, 0.0)
    return advantages, torch.where(mask, advantages + values, 0.0)


@wrong("compute_gae", r"off by one: δ_t uses V_\{t\+1\}")
def gae_delta_uses_own_value(rewards, values, mask, gamma=1.0, lam=0.95):
    return _gae_loop(rewards, values, mask, gamma, lam, next_value_of=lambda v, t: v[:, t])


@wrong("compute_gae", r"off by one: δ_t uses V_\{t\+1\}")
def gae_delta_uses_previous_value(rewards, values, mask, gamma=1.0, lam=0.95):
    previous = lambda v, t: v[:, t - 1] if t > 0 else torch.zeros_like(v[:, 0])
    return _gae_loop(rewards, values, mask, gamma, lam, next_value_of=previous)


@wrong("compute_gae", r"δ has the wrong sign")
def gae_delta_sign_flipped(rewards, values, mask, gamma=1.0, lam=0.95):
    advantages, _ = _gae_loop(-rewards, -values, mask, gamma, lam)
    return advantages, torch.where(mask, advantages + values, 0.0)


@wrong("compute_gae", r"episode should end after the last valid token: the next value there is 0")
def gae_no_reset(rewards, values, mask, gamma=1.0, lam=0.95):
    B, T = values.shape
    advantages = torch.zeros_like(values)
    last = torch.zeros(B, dtype=values.dtype)
    for t in reversed(range(T)):
        next_value = values[:, t + 1] if t + 1 < T else torch.zeros(B, dtype=values.dtype)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last = delta + gamma * lam * last
        advantages[:, t] = last
    advantages = torch.where(mask, advantages, 0.0)
    return advantages, torch.where(mask, advantages + values, 0.0)


@wrong("compute_gae", r"episode should end after the last valid token")
def gae_roll(rewards, values, mask, gamma=1.0, lam=0.95):
    next_values = torch.roll(values, -1, dims=1)             # wraps V_0 into the last column
    deltas = torch.where(mask, rewards + gamma * next_values - values, 0.0)
    advantages = torch.zeros_like(values)
    last = torch.zeros_like(values[:, 0])
    for t in reversed(range(values.shape[1])):
        last = deltas[:, t] + gamma * lam * last
        advantages[:, t] = last
    return advantages, torch.where(mask, advantages + values, 0.0)


@wrong("compute_gae", r"γ and λ are swapped")
def gae_swapped(rewards, values, mask, gamma=1.0, lam=0.95):
    return _gae_loop(rewards, values, mask, lam, gamma)


@wrong("compute_gae", r"recursion A_t = δ_t \+ γλ·A_\{t\+1\} is wrong")
def gae_trace_lambda_only(rewards, values, mask, gamma=1.0, lam=0.95):
    return _gae_loop(rewards, values, mask, gamma, lam, trace=lam)


@wrong("compute_gae", r"runs backwards in time")
def gae_forward(rewards, values, mask, gamma=1.0, lam=0.95):
    return _gae_loop(rewards, values, mask, gamma, lam, forward=True)


@wrong("compute_gae", r"advantages at padded positions are not 0")
def gae_padding_not_zeroed(rewards, values, mask, gamma=1.0, lam=0.95):
    B, T = values.shape
    next_valid = torch.cat([mask[:, 1:], torch.zeros_like(mask[:, :1])], 1)
    next_values = torch.where(next_valid, torch.cat([values[:, 1:], values[:, :1]], 1), 0.0)
    deltas = rewards + gamma * next_values - values          # garbage at the padded positions stays
    advantages = torch.zeros_like(values)
    last = torch.zeros(B, dtype=values.dtype)
    for t in reversed(range(T)):
        last = deltas[:, t] + gamma * lam * torch.where(next_valid[:, t], last, 0.0)
        advantages[:, t] = last
    return advantages, torch.where(mask, advantages + values, 0.0)


@wrong("compute_gae", r"returns must be advantages \+ values")
def gae_returns_are_discounted_rewards(rewards, values, mask, gamma=1.0, lam=0.95):
    advantages, _ = _gae_loop(rewards, values, mask, gamma, lam)
    returns = torch.zeros_like(values)
    running = torch.zeros_like(values[:, 0])
    for t in reversed(range(values.shape[1])):
        running = torch.where(mask[:, t], rewards[:, t], 0.0) + gamma * running
        returns[:, t] = running
    return advantages, torch.where(mask, returns, 0.0)


@wrong("compute_gae", r"returns at padded positions are not 0")
def gae_returns_not_masked(rewards, values, mask, gamma=1.0, lam=0.95):
    advantages, _ = _gae_loop(rewards, values, mask, gamma, lam)
    return advantages, advantages + values


# --------------------------------------------------------------------------------------------------
# whiten(x, mask=None, shift_mean=True)
# --------------------------------------------------------------------------------------------------

@correct("whiten")
def whiten_select_valid(x, mask=None, shift_mean=True):
    mask = torch.ones_like(x, dtype=torch.bool) if mask is None else mask
    valid = x[mask]
    mean, var = valid.mean(), valid.var()                 # torch.var is unbiased by default
    out = torch.zeros_like(x)
    out[mask] = (valid - mean) / torch.sqrt(var + 1e-8) + (0.0 if shift_mean else mean)
    return out


@correct("whiten")
def whiten_std_plus_eps(x, mask=None, shift_mean=True):
    mask = torch.ones_like(x, dtype=torch.bool) if mask is None else mask
    m = mask.to(x.dtype)
    x0 = torch.where(mask, x, 0.0)
    n = m.sum()
    mean = x0.sum() / n
    std = torch.sqrt((((x0 - mean) * m) ** 2).sum() / (n - 1))
    out = (x0 - mean) / (std + 1e-8)
    if not shift_mean:
        out = out + mean
    return out * m


def _whiten_with(x, mask, shift_mean, mean, var):
    out = (x - mean) / torch.sqrt(var + 1e-8)
    if not shift_mean:
        out = out + mean
    return torch.where(mask, out, 0.0)


@wrong("whiten", r"use the unbiased variance \(N−1\), like the reference")
def whiten_biased(x, mask=None, shift_mean=True):
    valid = x[mask]
    return _whiten_with(x, mask, shift_mean, valid.mean(), valid.var(unbiased=False))


@wrong("whiten", r"padding leaks into the statistics: use only masked entries for the mean and variance")
def whiten_statistics_with_padding(x, mask=None, shift_mean=True):
    return _whiten_with(x, mask, shift_mean, x.mean(), x.var())


@wrong("whiten", r"padding leaks into the statistics")
def whiten_zeros_counted(x, mask=None, shift_mean=True):
    x0 = torch.where(mask, x, 0.0)                        # padding as zeros, but still counted
    return _whiten_with(x, mask, shift_mean, x0.mean(), x0.var())


@wrong("whiten", r"statistics are per row")
def whiten_per_row(x, mask=None, shift_mean=True):
    out = torch.zeros_like(x)
    for b in range(x.shape[0]):
        valid = x[b][mask[b]]
        var = valid.var() if len(valid) > 1 else torch.tensor(1.0, dtype=x.dtype)
        out[b] = _whiten_with(x[b], mask[b], shift_mean, valid.mean(), var)
    return out


@wrong("whiten", r"padded positions must be 0")
def whiten_padding_not_zeroed(x, mask=None, shift_mean=True):
    valid = x[mask]
    out = (x - valid.mean()) / torch.sqrt(valid.var() + 1e-8)
    return out if shift_mean else out + valid.mean()


@wrong("whiten", r"must add the mean back")
def whiten_ignores_shift_mean(x, mask=None, shift_mean=True):
    valid = x[mask]
    return _whiten_with(x, mask, True, valid.mean(), valid.var())


@wrong("whiten", r"must add the mean back")
def whiten_shift_false_divides_only(x, mask=None, shift_mean=True):
    valid = x[mask]
    if shift_mean:
        return _whiten_with(x, mask, True, valid.mean(), valid.var())
    return torch.where(mask, x / torch.sqrt(valid.var() + 1e-8), 0.0)


@wrong("whiten", r"division by zero when all valid entries are equal")
def whiten_without_eps(x, mask=None, shift_mean=True):
    mask = torch.ones_like(x, dtype=torch.bool) if mask is None else mask
    valid = x[mask]
    out = (x - valid.mean()) / valid.std()
    return torch.where(mask, out if shift_mean else out + valid.mean(), 0.0)


@wrong("whiten", r"mask=None must treat every entry as valid")
def whiten_mask_none_means_nothing(x, mask=None, shift_mean=True):
    if mask is None:
        return x
    valid = x[mask]
    return _whiten_with(x, mask, shift_mean, valid.mean(), valid.var())


# --------------------------------------------------------------------------------------------------
# ppo_policy_loss(logprobs, old_logprobs, advantages, mask, clip_range)
# --------------------------------------------------------------------------------------------------

@correct("ppo_policy_loss")
def ppo_min_of_objectives(logprobs, old_logprobs, advantages, mask, clip_range=0.2):
    ratio = torch.exp(torch.where(mask, logprobs - old_logprobs, 0.0))
    advantages = torch.where(mask, advantages, 0.0)
    objective = torch.min(advantages * ratio, advantages * ratio.clamp(1 - clip_range, 1 + clip_range))
    return -_masked_mean(objective, mask), {}


@correct("ppo_policy_loss")
def ppo_token_loop(logprobs, old_logprobs, advantages, mask, clip_range=0.2):
    terms = []
    for b, t in mask.nonzero().tolist():
        ratio = torch.exp(logprobs[b, t] - old_logprobs[b, t])
        clipped = torch.clamp(ratio, 1 - clip_range, 1 + clip_range)
        terms.append(torch.maximum(-advantages[b, t] * ratio, -advantages[b, t] * clipped))
    return torch.stack(terms).mean(), {}


@correct("ppo_policy_loss")
def ppo_float_mask(logprobs, old_logprobs, advantages, mask, clip_range=0.2):
    m = mask.float()
    log_ratio = (logprobs - old_logprobs) * m                         # 0 at padding: ratio 1 there
    ratio = log_ratio.exp()
    unclipped = -advantages * m * ratio
    clipped = -advantages * m * ratio.clamp(1 - clip_range, 1 + clip_range)
    per_token = torch.max(unclipped, clipped)
    loss = (per_token * m).sum() / m.sum()
    clipfrac = ((clipped > unclipped).float() * m).sum() / m.sum()
    return loss, {"clipfrac": clipfrac.item()}


def _ppo_terms(logprobs, old_logprobs, advantages, mask, clip_range, ratio_of=torch.exp, combine=torch.maximum):
    log_ratio = torch.where(mask, logprobs - old_logprobs, 0.0)
    ratio = ratio_of(log_ratio)
    advantages = torch.where(mask, advantages, 0.0)
    return combine(-advantages * ratio, -advantages * ratio.clamp(1 - clip_range, 1 + clip_range))


@wrong("ppo_policy_loss", r"log-ratio log π − log π_old where the loss needs the ratio")
def ppo_log_ratio_as_ratio(logprobs, old_logprobs, advantages, mask, clip_range=0.2):
    terms = _ppo_terms(logprobs, old_logprobs, advantages, mask, clip_range, ratio_of=lambda log_ratio: log_ratio)
    return _masked_mean(terms, mask), {}


@wrong("ppo_policy_loss", r"not a ratio of log-probabilities")
def ppo_ratio_of_logprobs(logprobs, old_logprobs, advantages, mask, clip_range=0.2):
    ratio = torch.where(mask, logprobs / old_logprobs, 1.0)
    advantages = torch.where(mask, advantages, 0.0)
    terms = torch.maximum(-advantages * ratio, -advantages * ratio.clamp(1 - clip_range, 1 + clip_range))
    return _masked_mean(terms, mask), {}


@wrong("ppo_policy_loss", r"clipping uses min instead of max in the loss \(you are minimising −A·ρ")
def ppo_min_instead_of_max(logprobs, old_logprobs, advantages, mask, clip_range=0.2):
    terms = _ppo_terms(logprobs, old_logprobs, advantages, mask, clip_range, combine=torch.minimum)
    return _masked_mean(terms, mask), {}


@wrong("ppo_policy_loss", r"no clipping")
def ppo_no_clipping(logprobs, old_logprobs, advantages, mask, clip_range=0.2):
    ratio = torch.exp(torch.where(mask, logprobs - old_logprobs, 0.0))
    return _masked_mean(-advantages * ratio, mask), {}


@wrong("ppo_policy_loss", r"clipping is wrong on one side")
def ppo_clip_upper_only(logprobs, old_logprobs, advantages, mask, clip_range=0.2):
    ratio = torch.exp(torch.where(mask, logprobs - old_logprobs, 0.0))
    terms = torch.maximum(-advantages * ratio, -advantages * ratio.clamp(max=1 + clip_range))
    return _masked_mean(terms, mask), {}


@wrong("ppo_policy_loss", r"clip the ratio ρ itself")
def ppo_clip_log_ratio(logprobs, old_logprobs, advantages, mask, clip_range=0.2):
    log_ratio = torch.where(mask, logprobs - old_logprobs, 0.0)
    clipped_ratio = log_ratio.clamp(-clip_range, clip_range).exp()       # [e^-ε, e^ε], not [1 - ε, 1 + ε]
    terms = torch.maximum(-advantages * log_ratio.exp(), -advantages * clipped_ratio)
    return _masked_mean(terms, mask), {}


@wrong("ppo_policy_loss", r"wrong sign: PPO maximises A·ρ")
def ppo_objective_not_loss(logprobs, old_logprobs, advantages, mask, clip_range=0.2):
    ratio = torch.exp(torch.where(mask, logprobs - old_logprobs, 0.0))
    objective = torch.minimum(advantages * ratio, advantages * ratio.clamp(1 - clip_range, 1 + clip_range))
    return _masked_mean(objective, mask), {}


@wrong("ppo_policy_loss", r"clip_range is ignored")
def ppo_clip_range_hardcoded(logprobs, old_logprobs, advantages, mask, clip_range=0.2):
    return _masked_mean(_ppo_terms(logprobs, old_logprobs, advantages, mask, 0.2), mask), {}


@wrong("ppo_policy_loss", r"padding leaks into ppo_policy_loss")
def ppo_mean_over_everything(logprobs, old_logprobs, advantages, mask, clip_range=0.2):
    ratio = torch.exp(logprobs - old_logprobs)
    return torch.maximum(-advantages * ratio, -advantages * ratio.clamp(1 - clip_range, 1 + clip_range)).mean(), {}


@wrong("ppo_policy_loss", r"divides by all B·T entries, so padding counts")
def ppo_divides_by_all_entries(logprobs, old_logprobs, advantages, mask, clip_range=0.2):
    return _ppo_terms(logprobs, old_logprobs, advantages, mask, clip_range).mean(), {}


@wrong("ppo_policy_loss", r"averages each row first")
def ppo_mean_per_row(logprobs, old_logprobs, advantages, mask, clip_range=0.2):
    terms = _ppo_terms(logprobs, old_logprobs, advantages, mask, clip_range)
    return (terms.sum(1) / mask.sum(1)).mean(), {}


@wrong("ppo_policy_loss", r"is a sum where it must be a mean")
def ppo_sum(logprobs, old_logprobs, advantages, mask, clip_range=0.2):
    return _ppo_terms(logprobs, old_logprobs, advantages, mask, clip_range).sum(), {}


@wrong("ppo_policy_loss", r"no gradient to logprobs")
def ppo_detached(logprobs, old_logprobs, advantages, mask, clip_range=0.2):
    return _masked_mean(_ppo_terms(logprobs.detach(), old_logprobs, advantages, mask, clip_range), mask), {}


@wrong("ppo_policy_loss", r"right value but the wrong gradient")
def ppo_clipped_branch_detached(logprobs, old_logprobs, advantages, mask, clip_range=0.2):
    ratio = torch.exp(torch.where(mask, logprobs - old_logprobs, 0.0))
    advantages = torch.where(mask, advantages, 0.0)
    unclipped = -advantages * ratio.detach()                          # no gradient through ρ here
    clipped = -advantages * ratio.clamp(1 - clip_range, 1 + clip_range)
    return _masked_mean(torch.maximum(unclipped, clipped), mask), {}


@wrong("ppo_policy_loss", r"stats\['clipfrac'\]")
def ppo_clipfrac_counts_inside(logprobs, old_logprobs, advantages, mask, clip_range=0.2):
    ratio = torch.exp(torch.where(mask, logprobs - old_logprobs, 0.0))
    outside = (ratio < 1 - clip_range) | (ratio > 1 + clip_range)     # not the same as "clipped term wins"
    loss = _masked_mean(_ppo_terms(logprobs, old_logprobs, advantages, mask, clip_range), mask)
    return loss, {"clipfrac": _masked_mean(outside.double(), mask).item()}


# --------------------------------------------------------------------------------------------------
# value_loss(values, old_values, returns, mask, clip_range)
# --------------------------------------------------------------------------------------------------

@correct("value_loss")
def value_token_loop(values, old_values, returns, mask, clip_range=0.2):
    terms = []
    for b, t in mask.nonzero().tolist():
        v, v_old, r = values[b, t], old_values[b, t], returns[b, t]
        v_clip = v_old + torch.clamp(v - v_old, -clip_range, clip_range)
        terms.append(0.5 * torch.maximum((v - r) ** 2, (v_clip - r) ** 2))
    return torch.stack(terms).mean(), {}


@correct("value_loss")
def value_float_mask(values, old_values, returns, mask, clip_range=0.2):
    m = mask.double()
    values, old_values, returns = values * m, old_values * m, returns * m
    v_clip = torch.clamp(values, old_values - clip_range, old_values + clip_range)
    per_token = torch.max((values - returns).pow(2), (v_clip - returns).pow(2))
    return 0.5 * (per_token * m).sum() / m.sum(), {}


def _value_terms(values, old_values, returns, mask, clip_range, clip_values=None, combine=torch.maximum):
    values, old_values, returns = (torch.where(mask, x, 0.0) for x in (values, old_values, returns))
    if clip_values is None:
        v_clip = old_values + torch.clamp(values - old_values, -clip_range, clip_range)
    else:
        v_clip = clip_values(values, old_values)
    return 0.5 * combine((values - returns) ** 2, (v_clip - returns) ** 2)


@wrong("value_loss", r"missing the ½")
def value_no_half(values, old_values, returns, mask, clip_range=0.2):
    return 2 * _masked_mean(_value_terms(values, old_values, returns, mask, clip_range), mask), {}


@wrong("value_loss", r"you clip V itself; clip the change V − V_old")
def value_clip_v_not_change(values, old_values, returns, mask, clip_range=0.2):
    clip_v = lambda v, v_old: torch.clamp(v, -clip_range, clip_range)
    return _masked_mean(_value_terms(values, old_values, returns, mask, clip_range, clip_values=clip_v), mask), {}


@wrong("value_loss", r"takes the min of the clipped and unclipped terms")
def value_min_instead_of_max(values, old_values, returns, mask, clip_range=0.2):
    terms = _value_terms(values, old_values, returns, mask, clip_range, combine=torch.minimum)
    return _masked_mean(terms, mask), {}


@wrong("value_loss", r"no clipping")
def value_no_clipping(values, old_values, returns, mask, clip_range=0.2):
    return 0.5 * _masked_mean((values - returns) ** 2, mask), {}


@wrong("value_loss", r"clip_range is ignored")
def value_clip_range_hardcoded(values, old_values, returns, mask, clip_range=0.2):
    return _masked_mean(_value_terms(values, old_values, returns, mask, 0.2), mask), {}


@wrong("value_loss", r"padding leaks into value_loss")
def value_mean_over_everything(values, old_values, returns, mask, clip_range=0.2):
    v_clip = old_values + torch.clamp(values - old_values, -clip_range, clip_range)
    return 0.5 * torch.maximum((values - returns) ** 2, (v_clip - returns) ** 2).mean(), {}


@wrong("value_loss", r"averages each row first")
def value_mean_per_row(values, old_values, returns, mask, clip_range=0.2):
    terms = _value_terms(values, old_values, returns, mask, clip_range)
    return (terms.sum(1) / mask.sum(1)).mean(), {}


@wrong("value_loss", r"no gradient to values")
def value_under_no_grad(values, old_values, returns, mask, clip_range=0.2):
    with torch.no_grad():
        return _masked_mean(_value_terms(values, old_values, returns, mask, clip_range), mask), {}


@wrong("value_loss", r"is a sum where it must be a mean")
def value_sum(values, old_values, returns, mask, clip_range=0.2):
    return _value_terms(values, old_values, returns, mask, clip_range).sum(), {}


# --------------------------------------------------------------------------------------------------
# The adaptive KL controller: cls(init_kl_coef, target, horizon), .value, .update(current_kl, n_steps)
# --------------------------------------------------------------------------------------------------

class _Controller:
    def __init__(self, init_kl_coef, target, horizon):
        self.value, self.target, self.horizon = init_kl_coef, target, horizon

    def error(self, current_kl):
        return float(np.clip(current_kl / self.target - 1, -0.2, 0.2))


@correct("kl_controller")
class ControllerWithNumpy(_Controller):
    def update(self, current_kl, n_steps):
        self.value *= 1 + self.error(current_kl) * n_steps / self.horizon
        return self.value


@correct("kl_controller")
class ControllerAddsTheStep(_Controller):
    def update(self, current_kl, n_steps):
        error = max(-0.2, min(0.2, (current_kl - self.target) / self.target))
        self.value = self.value + self.value * error * (n_steps / self.horizon)
        return self.value


@wrong("kl_controller", r"β moved by more than the clip allows")
class ControllerWithoutClip(_Controller):
    def update(self, current_kl, n_steps):
        self.value *= 1 + (current_kl / self.target - 1) * n_steps / self.horizon
        return self.value


@wrong("kl_controller", r"β moves the wrong way")
class ControllerWrongSign(_Controller):
    def update(self, current_kl, n_steps):
        self.value *= 1 - self.error(current_kl) * n_steps / self.horizon
        return self.value


@wrong("kl_controller", r"update is multiplicative")
class ControllerAdditive(_Controller):
    def update(self, current_kl, n_steps):
        self.value += self.error(current_kl) * n_steps / self.horizon
        return self.value


@wrong("kl_controller", r"proportional to n_steps / horizon")
class ControllerIgnoresNSteps(_Controller):
    def update(self, current_kl, n_steps):
        self.value *= 1 + self.error(current_kl) / self.horizon
        return self.value


@wrong("kl_controller", r"error is relative")
class ControllerAbsoluteError(_Controller):
    def update(self, current_kl, n_steps):
        self.value *= 1 + float(np.clip(current_kl - self.target, -0.2, 0.2)) * n_steps / self.horizon
        return self.value


@wrong("kl_controller", r"must return the new β")
class ControllerReturnsNothing(_Controller):
    def update(self, current_kl, n_steps):
        self.value *= 1 + self.error(current_kl) * n_steps / self.horizon


# --------------------------------------------------------------------------------------------------
# win_rate(scores_a, scores_b, z=1.96) -> (rate, low, high)
# --------------------------------------------------------------------------------------------------

def _outcomes(a, b, tie=0.5):
    return [1.0 if x > y else tie if x == y else 0.0 for x, y in zip(a, b)]


def _interval(outcomes, z, ddof=1, clip_low=True, clip_high=True):
    n = len(outcomes)
    mean = sum(outcomes) / n
    half = z * (sum((o - mean) ** 2 for o in outcomes) / (n - ddof)) ** 0.5 / n ** 0.5
    return (mean, max(0.0, mean - half) if clip_low else mean - half,
            min(1.0, mean + half) if clip_high else mean + half)


@correct("win_rate")
def win_rate_loop(scores_a, scores_b, z=1.96):
    return _interval(_outcomes(scores_a, scores_b), z)


@correct("win_rate")
def win_rate_numpy_population_sd(scores_a, scores_b, z=1.96):
    a, b = np.asarray(scores_a), np.asarray(scores_b)
    outcomes = (a > b) + 0.5 * (a == b)
    rate, half = outcomes.mean(), z * outcomes.std() / np.sqrt(len(outcomes))
    return float(rate), float(max(0.0, rate - half)), float(min(1.0, rate + half))


@wrong("win_rate", r"ties count as losses")
def win_rate_ties_lose(scores_a, scores_b, z=1.96):
    return _interval(_outcomes(scores_a, scores_b, tie=0.0), z)


@wrong("win_rate", r"ties count as wins")
def win_rate_ties_win(scores_a, scores_b, z=1.96):
    return _interval(_outcomes(scores_a, scores_b, tie=1.0), z)


@wrong("win_rate", r"ties were dropped")
def win_rate_drops_ties(scores_a, scores_b, z=1.96):
    return _interval([o for o in _outcomes(scores_a, scores_b) if o != 0.5], z)


@wrong("win_rate", r"A and B are swapped")
def win_rate_swapped(scores_a, scores_b, z=1.96):
    return _interval(_outcomes(scores_b, scores_a), z)


@wrong("win_rate", r"clip the interval")
def win_rate_unclipped(scores_a, scores_b, z=1.96):
    return _interval(_outcomes(scores_a, scores_b), z, clip_low=False, clip_high=False)


@wrong("win_rate", r"clip the interval .* the lower end")
def win_rate_clips_only_the_top(scores_a, scores_b, z=1.96):
    return _interval(_outcomes(scores_a, scores_b), z, clip_low=False)


@wrong("win_rate", r"90 % interval")
def win_rate_90_percent(scores_a, scores_b, z=1.96):
    return _interval(_outcomes(scores_a, scores_b), 1.645)


@wrong("win_rate", r"the spread of the \*mean\*")
def win_rate_forgets_sqrt_n(scores_a, scores_b, z=1.96):
    outcomes = _outcomes(scores_a, scores_b)
    n = len(outcomes)
    mean = sum(outcomes) / n
    sd = (sum((o - mean) ** 2 for o in outcomes) / (n - 1)) ** 0.5
    return mean, max(0.0, mean - z * sd), min(1.0, mean + z * sd)


@wrong("win_rate", r"ties included")
def win_rate_binomial(scores_a, scores_b, z=1.96):
    outcomes = _outcomes(scores_a, scores_b)
    n = len(outcomes)
    p = sum(outcomes) / n
    half = z * (p * (1 - p) / n) ** 0.5
    return p, max(0.0, p - half), min(1.0, p + half)


@wrong("win_rate", r"the z argument is ignored")
def win_rate_ignores_z(scores_a, scores_b, z=1.96):
    return _interval(_outcomes(scores_a, scores_b), 1.96)


# --------------------------------------------------------------------------------------------------
# best_of_n_kl(n) -> log n − (n − 1)/n nats
# --------------------------------------------------------------------------------------------------

@correct("best_of_n_kl")
def best_of_n_kl_expanded(n):
    return math.log(n) - 1 + 1 / n


@correct("best_of_n_kl")
def best_of_n_kl_from_the_expectation(n):
    expected_log_u = -1 / n                        # E[log U] for U the max of n uniforms, density n·u^(n−1)
    return math.log(n) + (n - 1) * expected_log_u


@correct("best_of_n_kl")
def best_of_n_kl_torch(n):
    n = torch.tensor(float(n), dtype=torch.float64)
    return torch.log(n) - (n - 1) / n              # a 0-d tensor


@wrong("best_of_n_kl", r"you return log n")
def best_of_n_kl_log_n(n):
    return math.log(n)


@wrong("best_of_n_kl", r"you return log n")
def best_of_n_kl_integer_division(n):
    return math.log(n) - (n - 1) // n              # (n − 1) // n is 0


@wrong("best_of_n_kl", r"\(n − 1\)/n alone")
def best_of_n_kl_without_log(n):
    return (n - 1) / n


@wrong("best_of_n_kl", r"sign is flipped")
def best_of_n_kl_flipped(n):
    return (n - 1) / n - math.log(n)


@wrong("best_of_n_kl", r"log base 2")
def best_of_n_kl_bits(n):
    return math.log2(n) - (n - 1) / n


@wrong("best_of_n_kl", r"log base 2")
def best_of_n_kl_all_in_bits(n):
    return (math.log(n) - (n - 1) / n) / math.log(2)


@wrong("best_of_n_kl", r"large-n limit")
def best_of_n_kl_large_n(n):
    return math.log(n) - 1


@wrong("best_of_n_kl", r"off by one: you compute the KL of best-of-\(n \+ 1\)")
def best_of_n_kl_n_plus_one(n):
    return math.log(n + 1) - n / (n + 1)


@wrong("best_of_n_kl", r"off by one: you compute the KL of best-of-\(n − 1\)")
def best_of_n_kl_n_minus_one(n):
    m = n - 1                                      # "n − 1 extra samples"
    return math.log(m) - (m - 1) / m if m > 0 else 0.0


# --------------------------------------------------------------------------------------------------
# dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta) -> (loss, chosen_rewards, rejected_rewards)
# --------------------------------------------------------------------------------------------------

@correct("dpo_loss")
def dpo_loop(pc, pr, rc, rr, beta=0.1):
    terms = [-math.log(1 / (1 + math.exp(-beta * ((a - c) - (b - d))))) if beta * ((a - c) - (b - d)) > -30
             else -beta * ((a - c) - (b - d)) for a, b, c, d in zip(pc.tolist(), pr.tolist(), rc.tolist(), rr.tolist())]
    exact = F.softplus(-beta * ((pc - rc) - (pr - rr))).mean()     # for the gradient; the value is the loop's
    loss = exact + (sum(terms) / len(terms) - exact.detach())
    return loss, (beta * (pc - rc)).detach(), (beta * (pr - rr)).detach()


@correct("dpo_loss")
def dpo_softplus_of_logits(pc, pr, rc, rr, beta=0.1):
    logits = (pc - pr) - (rc - rr)                       # the same margin, grouped by model
    return F.softplus(-beta * logits).mean(), beta * (pc - rc).detach(), beta * (pr - rr).detach()


@wrong("dpo_loss", r"sign is flipped")
def dpo_sign_flipped(pc, pr, rc, rr, beta=0.1):
    return -F.logsigmoid(-beta * ((pc - rc) - (pr - rr))).mean(), beta * (pc - rc).detach(), beta * (pr - rr).detach()


@wrong("dpo_loss", r"sign is flipped")
def dpo_ratio_of_the_wrong_model(pc, pr, rc, rr, beta=0.1):
    return (-F.logsigmoid(beta * ((rc - pc) - (rr - pr))).mean(), beta * (rc - pc).detach(),
            beta * (rr - pr).detach())


@wrong("dpo_loss", r"reference is missing")
def dpo_no_reference(pc, pr, rc, rr, beta=0.1):
    return -F.logsigmoid(beta * (pc - pr)).mean(), beta * pc.detach(), beta * pr.detach()


@wrong("dpo_loss", r"mix the answers")
def dpo_mixed_ratios(pc, pr, rc, rr, beta=0.1):
    return -F.logsigmoid(beta * ((pc - rr) - (pr - rc))).mean(), beta * (pc - rr).detach(), beta * (pr - rc).detach()


@wrong("dpo_loss", r"sum over the batch")
def dpo_sum(pc, pr, rc, rr, beta=0.1):
    return -F.logsigmoid(beta * ((pc - rc) - (pr - rr))).sum(), beta * (pc - rc).detach(), beta * (pr - rr).detach()


@wrong("dpo_loss", r"average the margins before")
def dpo_mean_inside(pc, pr, rc, rr, beta=0.1):
    return -F.logsigmoid((beta * ((pc - rc) - (pr - rr))).mean()), beta * (pc - rc).detach(), beta * (pr - rr).detach()


@wrong("dpo_loss", r"β is missing")
def dpo_no_beta(pc, pr, rc, rr, beta=0.1):
    return -F.logsigmoid((pc - rc) - (pr - rr)).mean(), beta * (pc - rc).detach(), beta * (pr - rr).detach()


@wrong("dpo_loss", r"β multiplies the margin inside")
def dpo_beta_outside(pc, pr, rc, rr, beta=0.1):
    return -beta * F.logsigmoid((pc - rc) - (pr - rr)).mean(), beta * (pc - rc).detach(), beta * (pr - rr).detach()


@wrong("dpo_loss", r"underflows")
def dpo_log_of_sigmoid(pc, pr, rc, rr, beta=0.1):
    return (-torch.log(torch.sigmoid(beta * ((pc - rc) - (pr - rr)))).mean(), beta * (pc - rc).detach(),
            beta * (pr - rr).detach())


@wrong("dpo_loss", r"implicit rewards miss β")
def dpo_rewards_without_beta(pc, pr, rc, rr, beta=0.1):
    return -F.logsigmoid(beta * ((pc - rc) - (pr - rr))).mean(), (pc - rc).detach(), (pr - rr).detach()


@wrong("dpo_loss", r"return them detached")
def dpo_rewards_attached(pc, pr, rc, rr, beta=0.1):
    return -F.logsigmoid(beta * ((pc - rc) - (pr - rr))).mean(), beta * (pc - rc), beta * (pr - rr)


@wrong("dpo_loss", r"must return three things")
def dpo_loss_only(pc, pr, rc, rr, beta=0.1):
    return -F.logsigmoid(beta * ((pc - rc) - (pr - rr))).mean()


# --------------------------------------------------------------------------------------------------
# rloo_advantages(returns, k) and grpo_advantages(returns, k) -> (B,)
# --------------------------------------------------------------------------------------------------

@correct("rloo_advantages")
def rloo_loop(returns, k):
    out = torch.zeros_like(returns)
    for start in range(0, len(returns), k):
        for i in range(start, start + k):
            others = [returns[j] for j in range(start, start + k) if j != i]
            out[i] = returns[i] - sum(others) / len(others)
    return out


@correct("rloo_advantages")
def rloo_scaled_mean(returns, k):                 # R_i − mean_others = k/(k − 1)·(R_i − mean_all)
    groups = returns.view(-1, k)
    return (k / (k - 1) * (groups - groups.mean(1, keepdim=True))).flatten()


@wrong("rloo_advantages", r"includes the answer itself")
@wrong("grpo_advantages", r"centred but not scaled")
def centred_within_the_group(returns, k):   # RLOO with the answer in its own baseline; GRPO without the std
    groups = returns.view(-1, k)
    return (groups - groups.mean(1, keepdim=True)).flatten()


@wrong("rloo_advantages", r"divide by k − 1")
def rloo_divides_by_k(returns, k):
    groups = returns.view(-1, k)
    return (groups - (groups.sum(1, keepdim=True) - groups) / k).flatten()


@wrong("rloo_advantages", r"whole batch")
def rloo_batch_baseline(returns, k):
    return returns - (returns.sum() - returns) / (len(returns) - 1)


@wrong("rloo_advantages", r"consecutive")
def rloo_strided_groups(returns, k):
    groups = returns.view(k, -1)                  # every k-th row in a group: the wrong layout
    return (groups - (groups.sum(0, keepdim=True) - groups) / (k - 1)).flatten()


@wrong("rloo_advantages", r"GRPO")
def rloo_normalised(returns, k):
    groups = returns.view(-1, k)
    baseline = (groups.sum(1, keepdim=True) - groups) / (k - 1)
    return ((groups - baseline) / groups.std(1, keepdim=True)).flatten()


@wrong("rloo_advantages", r"in place")
def rloo_in_place(returns, k):
    groups = returns.view(-1, k)
    baseline = (groups.sum(1, keepdim=True) - groups) / (k - 1)
    groups -= baseline
    return returns


@correct("grpo_advantages")
def grpo_loop(returns, k):
    out = torch.zeros_like(returns)
    for start in range(0, len(returns), k):
        group = returns[start:start + k].tolist()
        mean = sum(group) / k
        std = math.sqrt(sum((r - mean) ** 2 for r in group) / (k - 1))
        for i, r in enumerate(group):
            out[start + i] = (r - mean) / (std + 1e-4)
    return out


@correct("grpo_advantages")
def grpo_eps_in_the_root(returns, k):
    groups = returns.view(-1, k)
    var = groups.var(1, keepdim=True)
    return ((groups - groups.mean(1, keepdim=True)) / torch.sqrt(var + 1e-8)).flatten()


@wrong("grpo_advantages", r"whole batch's")
def grpo_batch_std(returns, k):
    groups = returns.view(-1, k)
    return ((groups - groups.mean(1, keepdim=True)) / returns.std()).flatten()


@wrong("grpo_advantages", r"normalises within each group")
def grpo_batch_mean_and_std(returns, k):
    return (returns - returns.mean()) / returns.std()


@wrong("grpo_advantages", r"NaN")
def grpo_no_eps(returns, k):
    groups = returns.view(-1, k)
    return ((groups - groups.mean(1, keepdim=True)) / groups.std(1, keepdim=True)).flatten()


@wrong("grpo_advantages", r"divides by k")
def grpo_population_std(returns, k):
    groups = returns.view(-1, k)
    return ((groups - groups.mean(1, keepdim=True)) / (groups.std(1, keepdim=True, unbiased=False) + 1e-4)).flatten()


@wrong("grpo_advantages", r"consecutive")
def grpo_strided_groups(returns, k):
    groups = returns.view(k, -1)
    return ((groups - groups.mean(0, keepdim=True)) / (groups.std(0, keepdim=True) + 1e-4)).flatten()

