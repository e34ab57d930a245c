"""Tests for rlhf_core.losses.

Each function is checked against an independent slow reference written as plain Python loops over
rows and tokens (Python floats, no vectorised torch), on random inputs with ragged masks and with
huge garbage at the padded positions, plus the properties the course teaches.
"""

import decimal
import math
import statistics
from decimal import Decimal

import pytest
import torch
import torch.nn.functional as F

from rlhf_core.losses import (AdaptiveKLController, FixedKLController, compute_gae, dpo_loss, entropy,
                              grpo_advantages, kl_per_token, masked_mean, masked_var, ppo_policy_loss, ranking_loss,
                              rlhf_rewards, rloo_advantages, sft_loss, value_loss, whiten)

SEEDS = [0, 1, 2, 3]


# --------------------------------------------------------------------------------------------------
# Random inputs
# --------------------------------------------------------------------------------------------------

def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _randn(gen, *shape, dtype=torch.float64, scale=1.0):
    return torch.randn(*shape, generator=gen, dtype=dtype) * scale


def _prefix_mask(gen, B, T, min_len=1):
    """(B, T) bool mask; row lengths uniform in [min_len, T], the first row full."""
    lengths = torch.randint(min_len, T + 1, (B,), generator=gen)
    lengths[0] = T
    return torch.arange(T)[None, :] < lengths[:, None]


def _garbage(gen, x, mask):
    """x with huge random numbers (|v| up to 1e30, and some ±inf) at the padded positions."""
    magnitude = 10 ** (torch.rand(x.shape, generator=gen, dtype=torch.float64) * 30)
    magnitude[torch.rand(x.shape, generator=gen) < 0.15] = math.inf
    sign = torch.where(torch.rand(x.shape, generator=gen) < 0.5, -1.0, 1.0).double()
    return torch.where(mask, x, (sign * magnitude).to(x.dtype))


def _rows(mask):
    """Per row, the list of valid token indices (plain Python)."""
    return [[t for t, ok in enumerate(row) if ok] for row in mask.tolist()]


def _softplus(x):
    """log(1 + e^x) for a Python float, stable for large |x|."""
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


# --------------------------------------------------------------------------------------------------
# Slow references: loops over rows and tokens
# --------------------------------------------------------------------------------------------------

def ref_masked_mean(x, mask):
    vals = [v for v, ok in zip(x.flatten().tolist(), mask.flatten().tolist()) if ok]
    return sum(vals) / len(vals)


def ref_whiten(x, mask, shift_mean=True):
    vals = [v for v, ok in zip(x.flatten().tolist(), mask.flatten().tolist()) if ok]
    mean, std = statistics.fmean(vals), math.sqrt(statistics.variance(vals) + 1e-8)
    out = []
    for v, ok in zip(x.flatten().tolist(), mask.flatten().tolist()):
        w = (v - mean) / std + (0.0 if shift_mean else mean)
        out.append(w if ok else 0.0)
    return torch.tensor(out, dtype=torch.float64).reshape(x.shape)


def ref_sft(logits, input_ids, response_mask):
    total, count = 0.0, 0
    for b in range(input_ids.shape[0]):
        for t in range(1, input_ids.shape[1]):
            if response_mask[b, t]:
                row = logits[b, t - 1].tolist()
                top = max(row)
                logsumexp = top + math.log(sum(math.exp(v - top) for v in row))
                total += logsumexp - row[int(input_ids[b, t])]
                count += 1
    return total / count


def ref_ranking(rewards, mask):
    per_prompt = []
    for row, valid in zip(rewards.tolist(), mask.tolist()):
        ranked = [r for r, ok in zip(row, valid) if ok]
        pairs = [(ranked[i], ranked[j]) for i in range(len(ranked)) for j in range(i + 1, len(ranked))]
        per_prompt.append(sum(_softplus(-(w - l)) for w, l in pairs) / len(pairs))
    return sum(per_prompt) / len(per_prompt)


def ref_rlhf_rewards(scores, logprobs, ref_logprobs, mask, kl_coef):
    out = torch.zeros(mask.shape, dtype=torch.float64)
    for b, tokens in enumerate(_rows(mask)):
        for t in tokens:
            out[b, t] = -kl_coef * (float(logprobs[b, t]) - float(ref_logprobs[b, t]))
        out[b, tokens[-1]] += float(scores[b])
    return out


def ref_kl(logp, ref_logp, estimator):
    d = float(ref_logp) - float(logp)
    if estimator == "k1":
        return -d
    if estimator == "k2":
        return 0.5 * d * d
    with decimal.localcontext(prec=60):  # e^d - 1 - d in 60-digit decimal arithmetic: exact here
        exact = Decimal(d).exp() - 1 - Decimal(d)
    return float(exact)


def ref_gae(rewards, values, mask, gamma, lam):
    adv = torch.zeros(mask.shape, dtype=torch.float64)
    for b, tokens in enumerate(_rows(mask)):
        n = len(tokens)
        running = 0.0
        for t in range(n - 1, -1, -1):
            next_value = float(values[b, t + 1]) if t + 1 < n else 0.0
            delta = float(rewards[b, t]) + gamma * next_value - float(values[b, t])
            running = delta + gamma * lam * running
            adv[b, t] = running
    returns = torch.where(mask, adv + values.double(), 0.0)
    return adv, returns


def ref_ppo(logprobs, old_logprobs, advantages, mask, eps):
    losses, clipped, kls = [], 0, []
    for b, tokens in enumerate(_rows(mask)):
        for t in tokens:
            a = float(advantages[b, t])
            log_ratio = float(logprobs[b, t]) - float(old_logprobs[b, t])
            rho = math.exp(log_ratio)
            unclipped_term = -a * rho
            clipped_term = -a * min(max(rho, 1 - eps), 1 + eps)
            losses.append(max(unclipped_term, clipped_term))
            clipped += clipped_term > unclipped_term
            kls.append(0.5 * log_ratio**2)
    n = len(losses)
    return sum(losses) / n, clipped / n, sum(kls) / n


def ref_value(values, old_values, returns, mask, eps):
    losses, clipped = [], 0
    for b, tokens in enumerate(_rows(mask)):
        for t in tokens:
            v, v_old, r = float(values[b, t]), float(old_values[b, t]), float(returns[b, t])
            v_clip = v_old + min(max(v - v_old, -eps), eps)
            losses.append(0.5 * max((v - r) ** 2, (v_clip - r) ** 2))
            clipped += (v_clip - r) ** 2 > (v - r) ** 2
    return sum(losses) / len(losses), clipped / len(losses)


def ref_dpo(pc, pr, rc, rr, beta):
    losses, chosen, rejected = [], [], []
    for a, b, c, d in zip(pc.tolist(), pr.tolist(), rc.tolist(), rr.tolist()):
        losses.append(_softplus(-beta * ((a - c) - (b - d))))  # -log σ(x) = softplus(-x)
        chosen.append(beta * (a - c))
        rejected.append(beta * (b - d))
    return sum(losses) / len(losses), chosen, rejected


# --------------------------------------------------------------------------------------------------
# masked_mean, masked_var, whiten
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", SEEDS)
def test_masked_mean_matches_reference(seed):
    gen = _gen(seed)
    mask = _prefix_mask(gen, 5, 7)
    x = _garbage(gen, _randn(gen, 5, 7), mask)
    assert masked_mean(x, mask).item() == pytest.approx(ref_masked_mean(x, mask), rel=1e-12)
    per_row = masked_mean(x, mask, dim=1)
    for b in range(5):
        assert per_row[b].item() == pytest.approx(ref_masked_mean(x[b], mask[b]), rel=1e-12)
    assert masked_mean(x, mask.long()).item() == pytest.approx(ref_masked_mean(x, mask), rel=1e-12)


def test_masked_mean_rejects_empty_and_non_binary_masks():
    x = torch.ones(2, 3)
    with pytest.raises(ValueError, match="selects no entries"):
        masked_mean(x, torch.zeros(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="selects no entries"):
        masked_mean(x, torch.tensor([[True, False, False], [False, False, False]]), dim=1)
    with pytest.raises(ValueError, match="only 0 and 1"):
        masked_mean(x, torch.full((2, 3), 2))
    with pytest.raises(ValueError, match="shape"):
        masked_mean(x, torch.ones(3, 2, dtype=torch.bool))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("unbiased", [True, False])
def test_masked_var_matches_statistics(seed, unbiased):
    gen = _gen(seed)
    mask = _prefix_mask(gen, 4, 6)
    x = _garbage(gen, _randn(gen, 4, 6), mask)
    vals = [v for v, ok in zip(x.flatten().tolist(), mask.flatten().tolist()) if ok]
    expected = statistics.variance(vals) if unbiased else statistics.pvariance(vals)
    assert masked_var(x, mask, unbiased=unbiased).item() == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("shift_mean", [True, False])
def test_whiten_matches_reference(seed, shift_mean):
    gen = _gen(seed)
    mask = _prefix_mask(gen, 4, 9)
    x = _randn(gen, 4, 9, scale=3.0) + 2.0
    out = whiten(_garbage(gen, x, mask), mask, shift_mean=shift_mean)
    torch.testing.assert_close(out, ref_whiten(x, mask, shift_mean), rtol=1e-10, atol=1e-10)
    assert (out[~mask] == 0).all()
    if shift_mean:
        assert masked_mean(out, mask).item() == pytest.approx(0.0, abs=1e-10)
        assert masked_var(out, mask).item() == pytest.approx(1.0, rel=1e-6)


def test_whiten_without_mask_uses_everything():
    x = torch.tensor([1.0, 2.0, 3.0, 6.0], dtype=torch.float64)
    torch.testing.assert_close(whiten(x), ref_whiten(x, torch.ones(4, dtype=torch.bool)))


def test_whiten_needs_two_valid_entries():
    with pytest.raises(ValueError, match="at least 2"):
        whiten(torch.ones(2, 3), torch.tensor([[True, False, False], [False, False, False]]))


# --------------------------------------------------------------------------------------------------
# sft_loss
# --------------------------------------------------------------------------------------------------

def _sft_batch(gen, B=3, L=8, V=11):
    logits = _randn(gen, B, L, V, scale=2.0)
    input_ids = torch.randint(0, V, (B, L), generator=gen)
    prompt_len = torch.randint(1, L // 2, (B,), generator=gen)
    end = torch.randint(L // 2 + 1, L + 1, (B,), generator=gen)
    positions = torch.arange(L)[None, :]
    response_mask = (positions >= prompt_len[:, None]) & (positions < end[:, None])
    return logits, input_ids, response_mask


@pytest.mark.parametrize("seed", SEEDS)
def test_sft_loss_matches_model_free_reference(seed):
    logits, input_ids, response_mask = _sft_batch(_gen(seed))
    loss = sft_loss(logits, input_ids, response_mask)
    assert loss.item() == pytest.approx(ref_sft(logits, input_ids, response_mask), rel=1e-10)


@pytest.mark.parametrize("seed", SEEDS)
def test_sft_loss_equals_cross_entropy_on_selected_positions(seed):
    logits, input_ids, response_mask = _sft_batch(_gen(seed))
    picked_logits, picked_ids = [], []
    for b in range(input_ids.shape[0]):
        for t in range(1, input_ids.shape[1]):
            if response_mask[b, t]:
                picked_logits.append(logits[b, t - 1])
                picked_ids.append(int(input_ids[b, t]))
    expected = F.cross_entropy(torch.stack(picked_logits), torch.tensor(picked_ids))
    torch.testing.assert_close(sft_loss(logits, input_ids, response_mask), expected)


@pytest.mark.parametrize("seed", SEEDS)
def test_sft_loss_ignores_non_target_positions(seed):
    gen = _gen(seed)
    logits, input_ids, response_mask = _sft_batch(gen)
    logits.requires_grad_(True)
    loss = sft_loss(logits, input_ids, response_mask)
    loss.backward()
    # Logits at position t matter only if token t+1 is a target.
    used = torch.cat([response_mask[:, 1:], torch.zeros_like(response_mask[:, :1])], dim=1)  # (B, L)
    garbage_logits = _garbage(gen, logits.detach(), used[:, :, None].expand_as(logits))
    garbage_ids = torch.where(response_mask, input_ids, torch.randint(0, 11, input_ids.shape, generator=gen))
    assert sft_loss(garbage_logits, garbage_ids, response_mask).item() == pytest.approx(loss.item(), rel=1e-12)
    assert (logits.grad[~used] == 0).all()


def test_sft_loss_errors():
    logits, input_ids, response_mask = _sft_batch(_gen(0))
    first = response_mask.clone()
    first[0, 0] = True
    with pytest.raises(ValueError, match=r"response_mask\[:, 0\]"):
        sft_loss(logits, input_ids, first)
    with pytest.raises(ValueError, match="selects no tokens"):
        sft_loss(logits, input_ids, torch.zeros_like(response_mask))
    with pytest.raises(ValueError, match="input_ids has shape"):
        sft_loss(logits, input_ids[:, :-1], response_mask)
    with pytest.raises(ValueError, match="response_mask has shape"):
        sft_loss(logits, input_ids, response_mask[:, :-1])
    with pytest.raises(ValueError, match=r"\(B, L, V\)"):
        sft_loss(logits[0], input_ids, response_mask)
    nan_logits = logits.clone()
    b, t = response_mask.nonzero()[0].tolist()
    nan_logits[b, t - 1, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        sft_loss(nan_logits, input_ids, response_mask)


# --------------------------------------------------------------------------------------------------
# ranking_loss (InstructGPT eq. 1)
# --------------------------------------------------------------------------------------------------

def _ranking_batch(gen, B=6, K=9):
    rewards = _randn(gen, B, K, scale=2.0)
    mask = _prefix_mask(gen, B, K, min_len=2)
    return rewards, mask


@pytest.mark.parametrize("seed", SEEDS)
def test_ranking_loss_matches_reference(seed):
    gen = _gen(seed)
    rewards, mask = _ranking_batch(gen)
    loss = ranking_loss(_garbage(gen, rewards, mask), mask)
    assert loss.item() == pytest.approx(ref_ranking(rewards, mask), rel=1e-10)
    full = torch.ones_like(mask)
    assert ranking_loss(rewards).item() == pytest.approx(ref_ranking(rewards, full), rel=1e-10)


def test_ranking_loss_accepts_non_contiguous_valid_columns():
    rewards = torch.tensor([[2.0, 99.0, 1.0, -0.5]], dtype=torch.float64)
    mask = torch.tensor([[True, False, True, True]])
    assert ranking_loss(rewards, mask).item() == pytest.approx(ref_ranking(rewards, mask), rel=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
def test_ranking_loss_is_shift_invariant(seed):
    gen = _gen(seed)
    rewards, mask = _ranking_batch(gen)
    loss = ranking_loss(rewards, mask)
    shifted = ranking_loss(rewards + 123.4, mask)
    per_row = ranking_loss(rewards + _randn(gen, rewards.shape[0], 1, scale=50.0), mask)
    torch.testing.assert_close(shifted, loss, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(per_row, loss, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("seed", SEEDS)
def test_ranking_loss_at_k2_is_pairwise_logistic(seed):
    rewards = _randn(_gen(seed), 16, 2, scale=3.0)
    expected = -F.logsigmoid(rewards[:, 0] - rewards[:, 1]).mean()
    torch.testing.assert_close(ranking_loss(rewards), expected)


def test_ranking_loss_is_mean_over_prompts_not_pairs():
    # Prompt 0 has K = 2 (1 pair), prompt 1 has K = 4 (6 pairs), all margins +1 or -1.
    rewards = torch.tensor([[0.0, 1.0, 0.0, 0.0], [3.0, 2.0, 1.0, 0.0]], dtype=torch.float64)
    mask = torch.tensor([[True, True, False, False], [True, True, True, True]])
    pair_losses = {0: [_softplus(1.0)],                                     # margin -1
                   1: [_softplus(-(3.0 - 2.0)), _softplus(-(3.0 - 1.0)), _softplus(-(3.0 - 0.0)),
                       _softplus(-(2.0 - 1.0)), _softplus(-(2.0 - 0.0)), _softplus(-(1.0 - 0.0))]}
    over_prompts = (statistics.fmean(pair_losses[0]) + statistics.fmean(pair_losses[1])) / 2
    over_pairs = statistics.fmean(pair_losses[0] + pair_losses[1])
    loss = ranking_loss(rewards, mask).item()
    assert loss == pytest.approx(over_prompts, rel=1e-12)
    assert loss != pytest.approx(over_pairs, rel=1e-3)


@pytest.mark.parametrize("margin", [100.0, -100.0])
def test_ranking_loss_is_finite_for_huge_margins_in_float32(margin):
    rewards = torch.tensor([[margin / 2, -margin / 2, -margin / 2 - 1.0]], requires_grad=True)
    loss = ranking_loss(rewards)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(rewards.grad).all()
    expected = (_softplus(-margin) + _softplus(-(margin + 1.0)) + _softplus(-1.0)) / 3
    assert loss.item() == pytest.approx(expected, rel=1e-5, abs=1e-6)
    if margin < 0:
        # Wrong order by 100: the best completion's reward must be pushed up.
        assert rewards.grad[0, 0] < 0 and rewards.grad[0, 1] > 0


@pytest.mark.parametrize("seed", SEEDS)
def test_ranking_loss_padding_gets_no_gradient(seed):
    gen = _gen(seed)
    rewards, mask = _ranking_batch(gen)
    noisy = _garbage(gen, rewards, mask).requires_grad_(True)
    ranking_loss(noisy, mask).backward()
    assert (noisy.grad[~mask] == 0).all() and torch.isfinite(noisy.grad).all()


def test_ranking_loss_errors():
    with pytest.raises(ValueError, match="K >= 2"):
        ranking_loss(torch.zeros(3, 1))
    with pytest.raises(ValueError, match="K >= 2"):
        ranking_loss(torch.zeros(6))
    mask = torch.tensor([[True, True, False], [True, False, False]])
    with pytest.raises(ValueError, match=r"rows \[1\] have fewer than two valid"):
        ranking_loss(torch.zeros(2, 3), mask)
    with pytest.raises(ValueError, match="mask has shape"):
        ranking_loss(torch.zeros(2, 3), torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="NaN"):
        ranking_loss(torch.tensor([[0.0, float("nan")]]))
    # NaN on a padded completion is ignored.
    ok = ranking_loss(torch.tensor([[1.0, 0.0, float("nan")]]), torch.tensor([[True, True, False]]))
    assert torch.isfinite(ok)


# --------------------------------------------------------------------------------------------------
# rlhf_rewards
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("kl_coef", [0.0, 0.02, 0.5])
def test_rlhf_rewards_matches_reference(seed, kl_coef):
    gen = _gen(seed)
    mask = _prefix_mask(gen, 5, 8)
    scores = _randn(gen, 5)
    logprobs, ref_logprobs = -_randn(gen, 5, 8).abs(), -_randn(gen, 5, 8).abs()
    out = rlhf_rewards(scores, _garbage(gen, logprobs, mask), _garbage(gen, ref_logprobs, mask), mask, kl_coef)
    torch.testing.assert_close(out, ref_rlhf_rewards(scores, logprobs, ref_logprobs, mask, kl_coef))
    # The rewards of a row sum to its score minus β times its summed k1 KL.
    kl_sum = torch.where(mask, logprobs - ref_logprobs, 0.0).sum(1)
    torch.testing.assert_close(out.sum(1), scores - kl_coef * kl_sum)


def test_rlhf_rewards_errors():
    mask = torch.tensor([[True, True, False], [True, False, False]])
    lp, scores = torch.zeros(2, 3), torch.zeros(2)
    with pytest.raises(ValueError, match="kl_coef"):
        rlhf_rewards(scores, lp, lp, mask, -0.1)
    with pytest.raises(ValueError, match="not a prefix"):
        rlhf_rewards(scores, lp, lp, torch.tensor([[True, False, True], [True, False, False]]), 0.1)
    with pytest.raises(ValueError, match=r"rows \[1\] have no valid token"):
        rlhf_rewards(scores, lp, lp, torch.tensor([[True, False, False], [False, False, False]]), 0.1)
    with pytest.raises(ValueError, match="scores has shape"):
        rlhf_rewards(torch.zeros(3), lp, lp, mask, 0.1)
    with pytest.raises(ValueError, match="ref_logprobs has shape"):
        rlhf_rewards(scores, lp, torch.zeros(2, 4), mask, 0.1)
    with pytest.raises(ValueError, match="NaN"):
        rlhf_rewards(torch.tensor([0.0, float("nan")]), lp, lp, mask, 0.1)
    with pytest.raises(ValueError, match="NaN"):
        rlhf_rewards(scores, torch.tensor([[0.0, float("nan"), 0.0], [0.0, 0.0, 0.0]]), lp, mask, 0.1)


# --------------------------------------------------------------------------------------------------
# kl_per_token
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("estimator", ["k1", "k2", "k3"])
def test_kl_per_token_matches_reference(seed, estimator):
    gen = _gen(seed)
    logprobs, ref_logprobs = -_randn(gen, 4, 6).abs() * 3, -_randn(gen, 4, 6).abs() * 3
    out = kl_per_token(logprobs, ref_logprobs, estimator)
    expected = torch.tensor([[ref_kl(a, b, estimator) for a, b in zip(row_a, row_b)]
                             for row_a, row_b in zip(logprobs.tolist(), ref_logprobs.tolist())],
                            dtype=torch.float64)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-14)


def test_k3_is_never_negative():
    d = torch.cat([torch.logspace(-20, 1.9, 4000), -torch.logspace(-20, 2, 4000), torch.zeros(1)])
    for dtype in (torch.float32, torch.float64):
        k3 = kl_per_token(torch.zeros_like(d, dtype=dtype), d.to(dtype), "k3")
        assert (k3 >= 0).all() and torch.isfinite(k3).all()


@pytest.mark.parametrize("magnitude", [1e-4, 1e-5, 1e-6, 1e-7, 1e-8, 0.3, 0.5, 0.7, 3.0])
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_k3_is_accurate_in_float32(magnitude, sign):
    d = torch.linspace(0.5, 1.0, 11) * magnitude * sign          # float32 log-ratios near ±magnitude
    logprobs = torch.full_like(d, -2.0)
    ref_logprobs = logprobs + d                                   # exact in float32 only for logprobs=0...
    d_exact = ref_logprobs.double() - logprobs.double()           # ... so take the d float32 really holds
    k3 = kl_per_token(logprobs, ref_logprobs, "k3")
    expected = torch.tensor([ref_kl(0.0, x, "k3") for x in d_exact.tolist()], dtype=torch.float64)
    torch.testing.assert_close(k3.double(), expected, rtol=1e-6, atol=0.0)


@pytest.mark.parametrize("seed", SEEDS)
def test_entropy_matches_reference(seed):
    logits = _randn(_gen(seed), 3, 5, 7) * 4
    expected = []
    for row in logits.tolist():
        expected.append([])
        for position in row:
            z = sum(math.exp(v) for v in position)
            expected[-1].append(-sum(math.exp(v) / z * math.log(math.exp(v) / z) for v in position))
    torch.testing.assert_close(entropy(logits), torch.tensor(expected, dtype=logits.dtype), rtol=1e-10, atol=1e-12)


def test_entropy_bounds():
    uniform, certain = torch.zeros(2, 11), torch.tensor([[0.0, -1e4, -1e4]])
    torch.testing.assert_close(entropy(uniform), torch.full((2,), math.log(11)))
    assert entropy(certain).item() == pytest.approx(0.0, abs=1e-12)  # no NaN from 0 · log 0


def test_kl_per_token_errors():
    with pytest.raises(ValueError, match="unknown estimator 'k4'"):
        kl_per_token(torch.zeros(3), torch.zeros(3), "k4")
    with pytest.raises(ValueError, match="ref_logprobs has shape"):
        kl_per_token(torch.zeros(3), torch.zeros(4))


# --------------------------------------------------------------------------------------------------
# compute_gae
# --------------------------------------------------------------------------------------------------

def _rl_batch(gen, B=5, T=9):
    mask = _prefix_mask(gen, B, T)
    return _randn(gen, B, T), _randn(gen, B, T), mask


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("gamma,lam", [(1.0, 0.95), (0.9, 0.7), (0.99, 0.0), (1.0, 1.0)])
def test_gae_matches_reference(seed, gamma, lam):
    gen = _gen(seed)
    rewards, values, mask = _rl_batch(gen)
    adv, ret = compute_gae(_garbage(gen, rewards, mask), _garbage(gen, values, mask), mask, gamma, lam)
    ref_adv, ref_ret = ref_gae(rewards, values, mask, gamma, lam)
    torch.testing.assert_close(adv, ref_adv)
    torch.testing.assert_close(ret, ref_ret)
    assert (adv[~mask] == 0).all() and (ret[~mask] == 0).all()


@pytest.mark.parametrize("seed", SEEDS)
def test_gae_lambda_one_is_returns_to_go_minus_values(seed):
    rewards, values, mask = _rl_batch(_gen(seed))
    adv, ret = compute_gae(rewards, values, mask, gamma=1.0, lam=1.0)
    for b, tokens in enumerate(_rows(mask)):
        for t in tokens:
            to_go = sum(float(rewards[b, s]) for s in tokens if s >= t)
            assert float(ret[b, t]) == pytest.approx(to_go, rel=1e-10, abs=1e-10)
            assert float(adv[b, t]) == pytest.approx(to_go - float(values[b, t]), rel=1e-10, abs=1e-10)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("gamma", [1.0, 0.9])
def test_gae_lambda_zero_is_one_step_td_error(seed, gamma):
    rewards, values, mask = _rl_batch(_gen(seed))
    adv, _ = compute_gae(rewards, values, mask, gamma=gamma, lam=0.0)
    for b, tokens in enumerate(_rows(mask)):
        for t in tokens:
            next_value = float(values[b, t + 1]) if t + 1 in tokens else 0.0
            td = float(rewards[b, t]) + gamma * next_value - float(values[b, t])
            assert float(adv[b, t]) == pytest.approx(td, rel=1e-10, abs=1e-10)


def test_gae_carries_no_gradient():
    rewards = torch.randn(2, 4, requires_grad=True)
    values = torch.randn(2, 4, requires_grad=True)
    adv, ret = compute_gae(rewards, values, torch.ones(2, 4, dtype=torch.bool))
    assert not adv.requires_grad and not ret.requires_grad


def test_gae_errors():
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="not a prefix"):
        compute_gae(x, x, torch.tensor([[False, True, True], [True, True, True]]))
    with pytest.raises(ValueError, match="values has shape"):
        compute_gae(x, torch.zeros(2, 4), torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="gamma"):
        compute_gae(x, x, torch.ones(2, 3, dtype=torch.bool), gamma=1.5)
    with pytest.raises(ValueError, match="lam"):
        compute_gae(x, x, torch.ones(2, 3, dtype=torch.bool), lam=-0.1)
    with pytest.raises(ValueError, match="NaN"):
        compute_gae(torch.tensor([[0.0, float("nan"), 0.0]]), torch.zeros(1, 3), torch.ones(1, 3, dtype=torch.bool))


# --------------------------------------------------------------------------------------------------
# ppo_policy_loss
# --------------------------------------------------------------------------------------------------

def _ppo_batch(gen, B=6, T=10):
    mask = _prefix_mask(gen, B, T)
    old_logprobs = -_randn(gen, B, T).abs() - 0.5
    logprobs = old_logprobs + _randn(gen, B, T, scale=0.3)        # ratios on both sides of the clip
    advantages = _randn(gen, B, T)
    return logprobs, old_logprobs, advantages, mask


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("clip_range", [0.1, 0.2])
def test_ppo_policy_loss_matches_reference(seed, clip_range):
    gen = _gen(seed)
    logprobs, old_logprobs, advantages, mask = _ppo_batch(gen)
    loss, stats = ppo_policy_loss(_garbage(gen, logprobs, mask), _garbage(gen, old_logprobs, mask),
                                  _garbage(gen, advantages, mask), mask, clip_range)
    ref_loss, ref_clipfrac, ref_approx_kl = ref_ppo(logprobs, old_logprobs, advantages, mask, clip_range)
    assert loss.item() == pytest.approx(ref_loss, rel=1e-10)
    assert stats["clipfrac"] == pytest.approx(ref_clipfrac, rel=1e-10)
    assert 0 < stats["clipfrac"] < 1
    assert stats["approx_kl"] == pytest.approx(ref_approx_kl, rel=1e-10)
    assert all(type(v) is float for v in stats.values())


@pytest.mark.parametrize("seed", SEEDS)
def test_ppo_policy_loss_inside_clip_range_is_plain_surrogate(seed):
    gen = _gen(seed)
    logprobs, old_logprobs, advantages, mask = _ppo_batch(gen)
    logprobs = old_logprobs + _randn(gen, *mask.shape, scale=0.01).clamp(-0.05, 0.05)  # |ρ-1| < 0.06
    loss, stats = ppo_policy_loss(logprobs, old_logprobs, advantages, mask, 0.2)
    ratio = torch.exp(logprobs - old_logprobs)
    assert loss.item() == pytest.approx(ref_masked_mean(-advantages * ratio, mask), rel=1e-10)
    assert stats["clipfrac"] == 0.0


@pytest.mark.parametrize("seed", SEEDS)
def test_ppo_policy_loss_gradient_is_zero_where_clipped(seed):
    gen = _gen(seed)
    logprobs, old_logprobs, advantages, mask = _ppo_batch(gen)
    logprobs = _garbage(gen, logprobs, mask).requires_grad_(True)
    loss, _ = ppo_policy_loss(logprobs, old_logprobs, advantages, mask, 0.2)
    loss.backward()
    n = int(mask.sum())
    for b, tokens in enumerate(_rows(mask)):
        for t in tokens:
            a = float(advantages[b, t])
            rho = math.exp(float(logprobs.detach()[b, t]) - float(old_logprobs[b, t]))
            clipped_active = (a > 0 and rho > 1.2) or (a < 0 and rho < 0.8)
            expected = 0.0 if clipped_active else -a * rho / n     # d(-Aρ)/dlogπ = -Aρ
            assert float(logprobs.grad[b, t]) == pytest.approx(expected, rel=1e-10, abs=1e-15)
    assert (logprobs.grad[~mask] == 0).all()


def test_ppo_policy_loss_errors():
    x, mask = torch.zeros(2, 3), torch.ones(2, 3, dtype=torch.bool)
    for bad in (0.0, -0.2):
        with pytest.raises(ValueError, match="clip_range"):
            ppo_policy_loss(x, x, x, mask, bad)
    with pytest.raises(ValueError, match="advantages has shape"):
        ppo_policy_loss(x, x, torch.zeros(2, 4), mask)
    with pytest.raises(ValueError, match="mask has shape"):
        ppo_policy_loss(x, x, x, torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="advantages contains NaN"):
        ppo_policy_loss(x, x, torch.tensor([[0.0, float("nan"), 0.0], [0.0, 0.0, 0.0]]), mask)


# --------------------------------------------------------------------------------------------------
# value_loss
# --------------------------------------------------------------------------------------------------

def _value_batch(gen, B=6, T=10):
    mask = _prefix_mask(gen, B, T)
    old_values = _randn(gen, B, T)
    values = old_values + _randn(gen, B, T, scale=0.3)
    returns = _randn(gen, B, T)
    return values, old_values, returns, mask


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("clip_range", [0.1, 0.2])
def test_value_loss_matches_reference(seed, clip_range):
    gen = _gen(seed)
    values, old_values, returns, mask = _value_batch(gen)
    loss, stats = value_loss(_garbage(gen, values, mask), _garbage(gen, old_values, mask),
                             _garbage(gen, returns, mask), mask, clip_range)
    ref_loss, ref_clipfrac = ref_value(values, old_values, returns, mask, clip_range)
    assert loss.item() == pytest.approx(ref_loss, rel=1e-10)
    assert stats["clipfrac"] == pytest.approx(ref_clipfrac, rel=1e-10)
    assert 0 < stats["clipfrac"] < 1
    assert stats["mean_value"] == pytest.approx(ref_masked_mean(values, mask), rel=1e-10)
    assert all(type(v) is float for v in stats.values())


@pytest.mark.parametrize("seed", SEEDS)
def test_value_loss_inside_clip_range_is_half_squared_error(seed):
    gen = _gen(seed)
    values, old_values, returns, mask = _value_batch(gen)
    values = old_values + _randn(gen, *mask.shape, scale=0.05).clamp(-0.15, 0.15)
    loss, stats = value_loss(values, old_values, returns, mask, 0.2)
    assert loss.item() == pytest.approx(ref_masked_mean(0.5 * (values - returns) ** 2, mask), rel=1e-10)
    assert stats["clipfrac"] == 0.0


@pytest.mark.parametrize("seed", SEEDS)
def test_value_loss_gradient_is_zero_where_clipped(seed):
    gen = _gen(seed)
    values, old_values, returns, mask = _value_batch(gen)
    values = _garbage(gen, values, mask).requires_grad_(True)
    loss, _ = value_loss(values, old_values, returns, mask, 0.2)
    loss.backward()
    n = int(mask.sum())
    for b, tokens in enumerate(_rows(mask)):
        for t in tokens:
            v, v_old, r = float(values.detach()[b, t]), float(old_values[b, t]), float(returns[b, t])
            v_clip = v_old + min(max(v - v_old, -0.2), 0.2)
            expected = 0.0 if (v_clip - r) ** 2 > (v - r) ** 2 else (v - r) / n
            assert float(values.grad[b, t]) == pytest.approx(expected, rel=1e-10, abs=1e-15)
    assert (values.grad[~mask] == 0).all()


def test_value_loss_errors():
    x, mask = torch.zeros(2, 3), torch.ones(2, 3, dtype=torch.bool)
    with pytest.raises(ValueError, match="clip_range"):
        value_loss(x, x, x, mask, 0.0)
    with pytest.raises(ValueError, match="returns has shape"):
        value_loss(x, x, torch.zeros(3, 3), mask)
    with pytest.raises(ValueError, match="old_values contains NaN"):
        value_loss(x, torch.full((2, 3), float("nan")), x, mask)


# --------------------------------------------------------------------------------------------------
# Padding never changes a result, for every masked function
# --------------------------------------------------------------------------------------------------

def _all_masked_outputs(tensors, mask):
    """Every masked function's outputs on the same (B, T) inputs, as a flat list of tensors."""
    a, b, c = tensors
    scores = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64)
    out = [masked_mean(a, mask), masked_mean(a, mask, dim=1), masked_var(a, mask),
           whiten(a, mask), whiten(a, mask, shift_mean=False),
           rlhf_rewards(scores, a, b, mask, 0.1), *compute_gae(a, b, mask, 1.0, 0.95)]
    for fn in (ppo_policy_loss, value_loss):
        loss, stats = fn(a, b, c, mask, 0.2)
        out += [loss, torch.tensor(list(stats.values()), dtype=torch.float64)]
    return out


@pytest.mark.parametrize("seed", SEEDS)
def test_padding_never_changes_any_result(seed):
    gen = _gen(seed)
    mask = _prefix_mask(gen, 4, 7)
    clean = [torch.where(mask, _randn(gen, 4, 7, scale=0.5), 0.0) for _ in range(3)]
    noisy = [_garbage(gen, x, mask).requires_grad_(True) for x in clean]
    clean = [x.clone().requires_grad_(True) for x in clean]
    for want, got in zip(_all_masked_outputs(clean, mask), _all_masked_outputs(noisy, mask)):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    # And the same gradients: zero on padding, identical on real tokens.
    sum(o.sum() for o in _all_masked_outputs(clean, mask) if o.requires_grad).backward()
    sum(o.sum() for o in _all_masked_outputs(noisy, mask) if o.requires_grad).backward()
    for x_clean, x_noisy in zip(clean, noisy):
        torch.testing.assert_close(x_noisy.grad, x_clean.grad, rtol=1e-12, atol=1e-12)
        assert (x_noisy.grad[~mask] == 0).all()


# --------------------------------------------------------------------------------------------------
# KL controllers
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("current_kl", [0.0, 3.0, 5.9, 6.0, 6.3, 9.0, 100.0])
@pytest.mark.parametrize("n_steps", [1, 64, 512])
def test_adaptive_kl_moves_towards_target_within_clip(current_kl, n_steps):
    controller = AdaptiveKLController(init_kl_coef=0.15, target=6.0, horizon=10_000)
    new = controller.update(current_kl, n_steps)
    assert new == controller.value
    factor = new / 0.15
    bound = 0.2 * n_steps / 10_000
    assert 1 - bound - 1e-15 <= factor <= 1 + bound + 1e-15
    if current_kl > 6.0:
        assert factor > 1
    elif current_kl < 6.0:
        assert factor < 1
    else:
        assert factor == 1
    error = min(max(current_kl / 6.0 - 1, -0.2), 0.2)     # Ziegler et al.'s rule, by hand
    assert new == pytest.approx(0.15 * (1 + error * n_steps / 10_000), rel=1e-15)


def test_adaptive_kl_sequence_matches_reference():
    gen = _gen(0)
    kls = (torch.rand(50, generator=gen) * 12).tolist()
    controller, beta = AdaptiveKLController(0.1, 6.0, 1000), 0.1
    for kl in kls:
        controller.update(kl, 32)
        beta *= 1 + min(max(kl / 6.0 - 1, -0.2), 0.2) * 32 / 1000
        assert controller.value == pytest.approx(beta, rel=1e-12)


def test_fixed_kl_controller_never_moves():
    controller = FixedKLController(0.02)
    assert controller.update(100.0, 1000) == 0.02 and controller.value == 0.02


@pytest.mark.parametrize("kwargs,match", [
    (dict(init_kl_coef=-0.1, target=6.0, horizon=10_000), "init_kl_coef"),
    (dict(init_kl_coef=0.1, target=-6.0, horizon=10_000), "target"),
    (dict(init_kl_coef=0.1, target=0.0, horizon=10_000), "target"),
    (dict(init_kl_coef=0.1, target=6.0, horizon=0), "horizon"),
    (dict(init_kl_coef=0.1, target=6.0, horizon=-5), "horizon"),
])
def test_kl_controller_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AdaptiveKLController(**kwargs)


def test_kl_controller_update_and_fixed_errors():
    with pytest.raises(ValueError, match="kl_coef"):
        FixedKLController(-0.02)
    with pytest.raises(ValueError, match="n_steps"):
        AdaptiveKLController(0.1, 6.0, 100).update(float("nan"), 1)
    with pytest.raises(ValueError, match="n_steps"):
        AdaptiveKLController(0.1, 6.0, 100).update(1.0, -1)


# --------------------------------------------------------------------------------------------------
# dpo_loss (Rafailov et al. 2023 eq. 7)
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("beta", [0.1, 0.5])
def test_dpo_loss_matches_reference(seed, beta):
    gen = _gen(seed)
    logps = [-_randn(gen, 8).abs() * 20 for _ in range(4)]
    for x in logps[:2]:
        x.requires_grad_(True)
    loss, chosen, rejected = dpo_loss(*logps, beta=beta)
    ref_loss, ref_chosen, ref_rejected = ref_dpo(*logps, beta)
    assert loss.item() == pytest.approx(ref_loss, rel=1e-10)
    assert chosen.tolist() == pytest.approx(ref_chosen, rel=1e-10)
    assert rejected.tolist() == pytest.approx(ref_rejected, rel=1e-10)
    assert loss.requires_grad and not chosen.requires_grad and not rejected.requires_grad


def test_dpo_loss_at_reference_is_log2_and_huge_margins_stay_finite():
    zeros = torch.zeros(4)
    loss, chosen, rejected = dpo_loss(zeros, zeros, zeros, zeros)
    assert loss.item() == pytest.approx(math.log(2)) and (chosen == 0).all() and (rejected == 0).all()
    policy_chosen = torch.tensor([-1000.0, 0.0], requires_grad=True)
    loss, _, _ = dpo_loss(policy_chosen, torch.tensor([0.0, -1000.0]), torch.zeros(2), torch.zeros(2), beta=1.0)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(policy_chosen.grad).all()


def test_dpo_loss_errors():
    x = torch.zeros(3)
    with pytest.raises(ValueError, match="ref_rejected_logps has shape"):
        dpo_loss(x, x, x, torch.zeros(4))
    with pytest.raises(ValueError, match="policy_rejected_logps contains NaN"):
        dpo_loss(x, torch.tensor([0.0, float("nan"), 0.0]), x, x)
    with pytest.raises(ValueError, match="beta"):
        dpo_loss(x, x, x, x, beta=0.0)


# --------------------------------------------------------------------------------------------------
# rloo_advantages, grpo_advantages (the critic-free baselines of notebook 07)
# --------------------------------------------------------------------------------------------------

def ref_rloo(returns, k):
    out = []
    for start in range(0, len(returns), k):
        group = returns[start:start + k]
        for i, r in enumerate(group):
            others = [x for j, x in enumerate(group) if j != i]
            out.append(r - sum(others) / len(others))
    return out


def ref_grpo(returns, k, eps=1e-4):
    out = []
    for start in range(0, len(returns), k):
        group = returns[start:start + k]
        mean = sum(group) / k
        std = math.sqrt(sum((r - mean) ** 2 for r in group) / (k - 1))
        out += [(r - mean) / (std + eps) for r in group]
    return out


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("k", [2, 3, 4, 8])
def test_group_baselines_match_loops(seed, k):
    returns = _randn(_gen(seed), 5 * k, scale=3.0)
    assert rloo_advantages(returns, k).tolist() == pytest.approx(ref_rloo(returns.tolist(), k), rel=1e-10, abs=1e-12)
    assert grpo_advantages(returns, k).tolist() == pytest.approx(ref_grpo(returns.tolist(), k), rel=1e-10, abs=1e-12)


def test_group_baselines_ignore_a_prompts_level_and_sum_to_zero_per_group():
    returns = _randn(_gen(0), 12)
    shifted = returns + torch.arange(3, dtype=torch.float64).repeat_interleave(4) * 100  # each prompt its own level
    for fn in (rloo_advantages, grpo_advantages):
        assert torch.allclose(fn(shifted, 4), fn(returns, 4), atol=1e-9)
        assert torch.allclose(fn(returns, 4).view(3, 4).sum(1), torch.zeros(3, dtype=torch.float64), atol=1e-9)
    same = torch.full((8,), 2.5)
    assert (rloo_advantages(same, 4) == 0).all() and (grpo_advantages(same, 4) == 0).all()  # no NaN from 0/0
    assert grpo_advantages(returns * 7, 4).tolist() == pytest.approx(grpo_advantages(returns, 4).tolist(), abs=1e-3)


def test_group_baselines_errors():
    with pytest.raises(ValueError, match="k >= 2"):
        rloo_advantages(torch.zeros(4), 1)
    with pytest.raises(ValueError, match="whole number of groups"):
        grpo_advantages(torch.zeros(5), 2)
    with pytest.raises(ValueError, match=r"must be \(B,\)"):
        rloo_advantages(torch.zeros(2, 4), 4)
    with pytest.raises(ValueError, match="NaN"):
        rloo_advantages(torch.tensor([1.0, float("nan")]), 2)

