"""The checks of the exercises before RL: sampling at a temperature, the SFT loss, the reward model's ranking loss.

- ``check_temperature_probs``: softmax(logits / T) over the vocabulary, against a row-by-row loop in Python
  floats; float32 logits at T = 0.01 must not overflow, the caller's logits stay as they were, T ≤ 0 is refused.
- ``check_sft_loss``: the cross-entropy of the demonstration tokens only (logits[:, t] predicts token t + 1, the
  mean over all target tokens of the batch), against ``losses.sft_loss``.
- ``check_ranking_loss``: InstructGPT eq. 1, all C(K,2) pairs of a prompt averaged, then the prompts, with
  ragged K; against ``losses.ranking_loss``.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from ... import losses
from .probes import _call, _call_on_originals, _close, _diff, _fail, _rounded, _tensor


# --------------------------------------------------------------------------------------------------
# Stage 0: sampling from the base model
# --------------------------------------------------------------------------------------------------

def _softmax_loop(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """softmax(logits / T) over the last dim, row by row in Python floats (the max subtracted first)."""
    rows = logits.double().reshape(-1, logits.shape[-1]).tolist()
    out = []
    for row in rows:
        scaled = [x / temperature for x in row]
        top = max(scaled)
        weights = [math.exp(x - top) for x in scaled]
        total = sum(weights)
        out.append([w / total for w in weights])
    return torch.tensor(out, dtype=torch.float64).reshape(logits.shape)


def check_temperature_probs(temperature_probs: Callable) -> None:
    """Check ``temperature_probs(logits, temperature)``: logits (B, V) -> the sampling distribution
    softmax(logits / T) over the vocabulary, (B, V); a temperature ≤ 0 is refused (or T = 0 is greedy)."""
    name = "temperature_probs"

    def run(logits, temperature, case="random logits (B=5, V=11), T = 0.5"):
        got = _tensor(_call(temperature_probs, name, case, logits, temperature), name, logits.shape)
        return got, _softmax_loop(logits, temperature)

    gen = torch.Generator().manual_seed(0)
    logits = 2 * torch.randn(5, 11, generator=gen, dtype=torch.float64)            # (B, V), B ≠ V
    T = 0.5
    got, expected = run(logits, T)
    if _close(got, expected.log()):
        _fail("you return log-probabilities (log_softmax): sampling needs the probabilities themselves, "
              "softmax(logits / T) — use F.softmax.")
    if _close(got, logits / T):
        _fail("you return the scaled logits, logits / T: apply the softmax over the vocabulary to turn them into "
              "probabilities (F.softmax(logits / temperature, dim=-1)).")
    if not torch.isfinite(got).all() or (got < 0).any():
        _fail(f"probabilities are finite and ≥ 0; yours has {_rounded(got[0])} in its first row.")
    if _close(got.sum(0), torch.ones(got.shape[1], dtype=torch.float64)):
        _fail("each column sums to 1, not each row: the softmax must be over the vocabulary, the last dim "
              "(dim=-1), not over the batch (dim=0).")
    plain = _softmax_loop(logits, 1.0)
    if _close(got, plain ** (1 / T)):
        _fail("you raise the probabilities to the power 1/T but do not renormalise, so the rows no longer sum "
              "to 1: divide by each row's sum — or, simpler, divide the *logits* by T before the softmax.")
    if _close(got, plain / T):
        _fail("you divide the probabilities by T after the softmax, so the rows no longer sum to 1: the "
              "temperature divides the *logits*, before the softmax.")
    if not _close(got.sum(-1), torch.ones(got.shape[0], dtype=torch.float64)):
        _fail(f"each row must sum to 1 (a distribution over the vocabulary); yours sum to {_rounded(got.sum(-1))}.")
    if _close(got, plain):
        _fail("the temperature is ignored: at T = 0.5 you return softmax(logits), the T = 1 distribution. "
              "Divide the logits by T before the softmax (adding or subtracting T changes nothing: the softmax "
              "ignores a constant added to every logit).")
    if _close(got, _softmax_loop(logits * T, 1.0)):
        _fail("you multiply the logits by T: divide them, softmax(logits / T), so that T < 1 sharpens the "
              "distribution and T > 1 flattens it.")
    if not _close(got, expected):
        _fail(f"at T = 0.5 your probabilities are not softmax(logits / T) ({_diff(got, expected)}).")

    original = logits.clone()
    _call_on_originals(temperature_probs, name, "random logits, T = 0.5", logits, T)
    if not torch.equal(logits, original):
        _fail("temperature_probs changed the logits passed to it (an in-place `logits /= temperature` or "
              "`.div_`): the caller's logits are then wrong, and a second call divides them again. Write "
              "`logits / temperature`, which makes a new tensor.")

    big = (10 * torch.randn(4, 50, generator=gen)).float()                          # float32, like a model's
    got, expected = run(big, 0.01, "float32 logits of size ±30 at T = 0.01")
    if not (torch.isfinite(got).all() and _close(got, expected, rtol=1e-4)):
        _fail("at T = 0.01 with float32 logits of size ±30 your probabilities are "
              f"{'not finite' if not torch.isfinite(got).all() else 'wrong'}: exp(logits / T) overflows "
              "(exp(3000) is inf, and inf / inf is NaN). Use F.softmax, which subtracts each row's max first.")

    for temperature in (0.0, -1.0):
        try:
            out = temperature_probs(logits.clone(), temperature)
        except Exception:
            continue                                                                # refused: right
        out = torch.as_tensor(out).detach().double() if isinstance(out, torch.Tensor) else None
        greedy = F.one_hot(logits.argmax(-1), logits.shape[-1]).double()
        if temperature == 0.0 and out is not None and out.shape == greedy.shape and _close(out, greedy):
            continue                                                                # T = 0 as greedy: fine too
        if temperature == 0.0:
            _fail("temperature_probs(logits, 0) returned "
                  f"{'NaN' if out is not None and out.isnan().any() else 'something'} instead of refusing: "
                  "logits / 0 is ±inf. Raise a ValueError for temperature ≤ 0 (T → 0 is greedy decoding, "
                  "the argmax: `generate(..., greedy=True)`).")
        _fail("temperature_probs(logits, −1) returned a distribution: a negative temperature turns the ranking "
              "upside down (the least likely token becomes the most likely). Raise a ValueError for "
              "temperature ≤ 0.")

    temperatures = (0.1, 0.3, 0.7, 1.0, 1.5, 3.0)
    for seed in range(24):
        g = torch.Generator().manual_seed(100 + seed)
        B, V = int(torch.randint(1, 6, (), generator=g)), int(torch.randint(2, 40, (), generator=g))
        logits = 3 * torch.randn(B, V, generator=g, dtype=torch.float64)
        temperature = temperatures[seed % len(temperatures)]
        got, expected = run(logits, temperature, f"random logits {seed} (B={B}, V={V}), T = {temperature}")
        if not _close(got, expected):
            _fail(f"temperature_probs does not match softmax(logits / T) on random logits {seed} "
                  f"(B={B}, V={V}, T = {temperature}): {_diff(got, expected)}.")
    print("✓ temperature_probs matches softmax(logits / T) on 24 random batches (T = 0.1 to 3), "
          "float32 logits at T = 0.01, and refuses T ≤ 0")


# --------------------------------------------------------------------------------------------------
# Stage 1 and 2: SFT and the reward model
# --------------------------------------------------------------------------------------------------

def _sft_batch(seed: int, B: int = 4, L: int = 9, V: int = 13):
    """logits (B, L, V), input_ids (B, L) and a response_mask: a prompt, a response, padding."""
    gen = torch.Generator().manual_seed(seed)
    prompt = torch.randint(1, 4, (B,), generator=gen)
    end = prompt + 1 + (torch.rand(B, generator=gen) * (L - prompt)).long()   # response: [prompt, end)
    end[0], end[1] = L, prompt[1] + 1            # a response up to the last column; a one-token one
    positions = torch.arange(L)[None, :]
    response_mask = (positions >= prompt[:, None]) & (positions < end[:, None])
    input_ids = torch.randint(0, V, (B, L), generator=gen)
    logits = 2 * torch.randn(B, L, V, generator=gen, dtype=torch.float64)
    return logits, input_ids, response_mask


def check_sft_loss(sft_loss: Callable) -> None:
    """Check ``sft_loss(logits, input_ids, response_mask)`` against ``losses.sft_loss``."""
    name = "sft_loss"

    def run(logits, input_ids, response_mask, case="a random batch"):
        return _tensor(_call(sft_loss, name, case, logits, input_ids, response_mask), name, ())

    def reference(logits, input_ids, response_mask):
        return losses.sft_loss(logits.double(), input_ids, response_mask)

    logits, input_ids, response_mask = _sft_batch(0)
    got = run(logits, input_ids, response_mask)
    B, L, V = logits.shape
    shift = 5 * torch.randn(B, L, 1, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    if not _close(run(logits + shift, input_ids, response_mask, "logits + a constant per position"), got):
        _fail("the loss changes when the same constant is added to all logits of one position: the "
              "softmax must be over the vocabulary (the last dim, V). Use F.cross_entropy, or "
              "F.log_softmax(logits, dim=-1).")
    if got < 0:
        _fail(f"the loss is negative ({got.item():.3g}): the cross-entropy is −log p(y_t) ≥ 0; "
              "you return +log p (flip the sign).")

    # Logits that predict the next token perfectly give a loss of about 0 (with the right shift).
    gen = torch.Generator().manual_seed(2)
    distinct_ids = torch.stack([torch.randperm(V, generator=gen)[:L] for _ in range(B)])   # (B, L)
    perfect = torch.zeros(B, L, V, dtype=torch.float64)
    perfect[:, :-1].scatter_(2, distinct_ids[:, 1:, None], 20.0)      # logits[:, t] peaks at id t+1
    value = run(perfect, distinct_ids, response_mask, "logits that predict the next token perfectly")
    if value > 1.0:
        _fail(f"off by one: logits[:, t] predicts token t + 1, so compare logits[:, :-1] with "
              f"input_ids[:, 1:]. Logits that predict every next token perfectly give you a loss of "
              f"{value.item():.3g}; the reference gives ≈ 0.")

    # The first response token is a target; nothing outside response_mask is.
    first = response_mask.long().argmax(1)                            # (B,): first response position
    rows = torch.arange(B)
    helped = logits.clone()
    helped[rows, first - 1, input_ids[rows, first]] += 3.0            # its predictor now favours it
    if _close(run(helped, input_ids, response_mask, "a batch"), got):
        _fail("the first demonstration token is not a target: the targets are input_ids[:, 1:], so "
              "select them with response_mask[:, 1:] (not response_mask[:, :-1]).")
    is_predictor = torch.cat([response_mask[:, 1:], torch.zeros_like(response_mask[:, :1])], 1)
    noise = torch.Generator().manual_seed(3)
    other_logits = torch.where(is_predictor[..., None], logits,
                               10 * torch.randn(B, L, V, generator=noise, dtype=torch.float64))
    other_ids = torch.where(response_mask, input_ids, torch.randint(0, V, (B, L), generator=noise))
    if not _close(run(other_logits, other_ids, response_mask, "a batch"), got):
        _fail("tokens outside response_mask enter the loss (the prompt or the padding): only "
              "demonstration tokens are targets. Keep logits[:, :-1] and input_ids[:, 1:] where "
              "response_mask[:, 1:] is True.")

    expected = reference(logits, input_ids, response_mask)
    n_targets = int(response_mask.sum())
    per_row = torch.stack([reference(logits[b:b + 1], input_ids[b:b + 1], response_mask[b:b + 1])
                           for b in range(B)]).mean()
    if _close(got, expected * n_targets):
        _fail("the loss is a sum over target tokens: take the mean (divide by the number of targets).")
    if _close(got, per_row) and not _close(expected, per_row):
        _fail("the loss averages each demonstration first and then the batch: the mean is over all "
              "target tokens of the batch, so long demonstrations weigh more (as in pretraining).")

    big = (100 * torch.randn(B, L, V, generator=torch.Generator().manual_seed(4))).float()  # float32
    value = run(big, input_ids, response_mask, "float32 logits of size ±300")
    if not (torch.isfinite(value) and _close(value, reference(big, input_ids, response_mask), rtol=1e-4)):
        _fail(f"the loss is {value.item():.4g} for large float32 logits (±300), the reference "
              f"{reference(big, input_ids, response_mask).item():.4g}: log(softmax(x)) underflows to "
              "log 0. Use F.log_softmax or F.cross_entropy (they subtract the max first).")

    for seed in range(10):
        batch = _sft_batch(seed)
        expected = reference(*batch)
        got = run(*batch, case=f"random batch {seed}")
        if not _close(got, expected):
            _fail(f"sft_loss does not match the reference on random batch {seed}: {got.item():.6g} vs "
                  f"{expected.item():.6g}.")
    print("✓ sft_loss matches the reference on 10 random batches and the edge cases")


def _ranking_batch(seed: int, B: int = 5, K: int = 4, garbage: int = 0):
    """rewards (B, K) best first, with K_i = 2..K valid completions per prompt (a prefix)."""
    gen = torch.Generator().manual_seed(seed)
    n_valid = torch.randint(2, K + 1, (B,), generator=gen)
    n_valid[0], n_valid[1] = K, 2
    mask = torch.arange(K)[None, :] < n_valid[:, None]
    rewards = 2 * torch.randn(B, K, generator=gen, dtype=torch.float64)
    junk = torch.Generator().manual_seed(1000 + garbage)
    return torch.where(mask, rewards, 10 + 20 * torch.rand(B, K, generator=junk, dtype=torch.float64)), mask


def check_ranking_loss(ranking_loss: Callable) -> None:
    """Check ``ranking_loss(rewards, mask)`` against ``losses.ranking_loss`` (InstructGPT eq. 1)."""
    name = "ranking_loss"

    def run(rewards, mask, case="a random batch"):
        return _tensor(_call(ranking_loss, name, case, rewards, mask), name, ())

    rewards, mask = _ranking_batch(0)
    got = run(rewards, mask)

    ordered = torch.tensor([[30.0, 20.0, 10.0, 0.0]], dtype=torch.float64)
    value = run(ordered, torch.ones_like(ordered, dtype=torch.bool), "rewards 30, 20, 10, 0")
    if value > 1.0:
        _fail(f"the loss is large ({value.item():.3g}) for rewards 30, 20, 10, 0 that already follow "
              "the ranking (columns are best first): the margin is r_i − r_j for i < j, the better "
              "completion minus the worse. Check the sign of the margin.")

    equal = torch.full((2, 4), 0.7, dtype=torch.float64)
    value = run(equal, torch.ones_like(equal, dtype=torch.bool), "two prompts with four equal rewards")
    if not _close(value, math.log(2)):
        hints = {6.0: " You sum the C(4,2) = 6 pairs of a prompt: divide by the number of pairs C(K,2).",
                 1.5: " You divide by K: divide by the number of pairs C(K,2) = K(K−1)/2.",
                 2.0: " You sum over the 2 prompts: take the mean over prompts.",
                 12.0: " You sum over pairs and prompts: average each prompt's pairs, then the prompts."}
        ratio = (value / math.log(2)).item()
        hint = next((text for r, text in hints.items() if abs(ratio - r) < 1e-4), "")
        _fail(f"with all rewards equal every pair's loss is log 2 ≈ 0.693, and so must be the mean; "
              f"yours is {value.item():.4g}.{hint}")

    if not _close(run(*_ranking_batch(0, garbage=1)), got):
        _fail("padding leaks: the loss changes when only the rewards of masked-out completions change. "
              "Completions where mask is False must not enter any pair.")

    expected = losses.ranking_loss(rewards, mask)
    per_prompt = torch.stack([losses.ranking_loss(rewards[b:b + 1], mask[b:b + 1]) for b in range(len(mask))])
    n_pairs = mask.sum(1) * (mask.sum(1) - 1) / 2
    mean_over_pairs = (per_prompt * n_pairs).sum() / n_pairs.sum()
    if _close(got, mean_over_pairs) and not _close(expected, mean_over_pairs):
        _fail("the mean must be over prompts, each prompt's pairs averaged first (InstructGPT eq. 1): "
              "all C(K,2) pairs of a prompt form one batch element, so every prompt weighs the same; "
              "you average over all pairs of the batch.")
    full = 2 * torch.randn(3, 4, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    neighbours = (-F.logsigmoid(full[:, :-1] - full[:, 1:])).mean(1).mean()
    if _close(run(full, torch.ones_like(full, dtype=torch.bool)), neighbours):
        _fail("only neighbouring completions are compared: use all C(K,2) pairs (i, j) with i < j, "
              "e.g. the first against the third too.")

    margins = torch.tensor([[-50.0, 50.0], [-100.0, 100.0], [50.0, -50.0]])        # float32
    value = run(margins, torch.ones_like(margins, dtype=torch.bool), "float32 margins of −100, −200, +100")
    if not (torch.isfinite(value) and _close(value, 100.0, rtol=1e-4)):
        _fail(f"the loss is {value.item():.4g} for float32 margins of −100, −200 and +100 (should be "
              "(100 + 200 + 0)/3 = 100): log(sigmoid(x)) underflows for margins of −100. Use "
              "F.logsigmoid (or F.softplus(−x)).")

    for seed in range(10):
        rewards, mask = _ranking_batch(seed, K=2 + seed % 4)
        got = run(rewards, mask, f"random batch {seed}")
        expected = losses.ranking_loss(rewards, mask)
        if not _close(got, expected):
            _fail(f"ranking_loss does not match the reference on random batch {seed} (K = {mask.shape[1]}): "
                  f"{got.item():.6g} vs {expected.item():.6g}.")
    print("✓ ranking_loss matches the reference on 10 random batches (K = 2..5, ragged) and margins of ±100")
