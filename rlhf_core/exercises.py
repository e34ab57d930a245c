"""Exercise checks, and student copies of the notebooks.

Each ``check_*`` takes a student's function (for the KL controller, the class) with the same
signature as the reference in ``rlhf_core.losses`` and compares it with the reference on random
inputs (several seeds, ragged masks, large numbers at the padded positions) and on hand-made edge
cases. The probes run from the most specific to the most general, so the first one that fails names
the mistake; a correct implementation prints one line:

    >>> check_compute_gae(compute_gae)
    ✓ compute_gae matches the reference on 40 random batches

A wrong one raises ``AssertionError`` with a diagnosis, e.g. "off by one: δ_t uses V_{t+1}, the
value of the *next* token ...". ``tests/wrong_implementations.py`` holds the typical mistakes every
check must catch, and correct variants (loops, other vectorisations) every check must accept.

Exercise cells use nbgrader's markers, so instructors who use nbgrader can use the notebooks as they
are. A markdown header, the exercise cell, then a one-line check::

    ### Exercise — implement `compute_gae`
    > **Difficulty**: 🔴🔴🔴⚪⚪  **Importance**: 🔵🔵🔵🔵⚪  **Time**: ~15 minutes
    (what to do, the equations)

    def compute_gae(rewards, values, mask, gamma=1.0, lam=0.95):
        \"\"\"...\"\"\"
        ### BEGIN SOLUTION
        ...
        ### END SOLUTION

    check_compute_gae(compute_gae)

Student copies (solutions replaced by ``raise NotImplementedError("Exercise — implement ...")``,
hidden tests removed, outputs cleared, and every cell that would show the library's code of an
exercised function left out: see ``make_student_notebook``)::

    python -m rlhf_core.exercises student notebooks/ student_notebooks/
    python -m rlhf_core.exercises list notebooks/
"""

from __future__ import annotations

import argparse
import ast
import copy
import importlib
import math
import re
import sys
from pathlib import Path
from typing import Callable, NoReturn

import torch
import torch.nn.functional as F

from rlhf_core import losses

__all__ = [
    "check_temperature_probs",
    "check_sft_loss",
    "check_ranking_loss",
    "check_rlhf_rewards",
    "check_kl_per_token",
    "check_compute_gae",
    "check_whiten",
    "check_ppo_policy_loss",
    "check_value_loss",
    "check_kl_controller",
    "check_win_rate",
    "check_best_of_n_kl",
    "check_dpo_loss",
    "check_rloo_advantages",
    "check_grpo_advantages",
    "CHECKS",
    "REFERENCES",
    "reference",
    "random_batch",
    "strip_solutions",
    "shown_references",
    "exercise_title",
    "list_exercises",
    "make_student_notebook",
    "main",
]

RTOL, ATOL = 1e-5, 1e-6   # inputs are float64, so only a different formula can exceed these


# --------------------------------------------------------------------------------------------------
# Shared helpers: random inputs, running the student's code safely, comparing
# --------------------------------------------------------------------------------------------------

def random_batch(seed: int, B: int = 4, T: int = 7, garbage: int = 0) -> dict[str, torch.Tensor]:
    """Random float64 inputs of the RL stage, with a ragged prefix ``mask`` (B, T).

    Row 0 is full (its last valid token is the last column), row 1 has a single token, the other
    rows random lengths. Every (B, T) tensor holds large numbers (±10..30) at its padded positions,
    so a leak shows; another ``garbage`` gives other padding numbers around the same valid entries.
    ``old_logprobs`` and ``old_values`` differ from ``logprobs`` and ``values`` by about 0.3, so
    about half the tokens fall outside a clip range of 0.2.
    """
    gen = torch.Generator().manual_seed(seed)
    junk = torch.Generator().manual_seed(100_003 * (garbage + 1) + seed)
    lengths = torch.randint(1, T + 1, (B,), generator=gen)
    lengths[0] = T
    if B > 1:
        lengths[1] = 1
    mask = torch.arange(T)[None, :] < lengths[:, None]                              # (B, T)

    def randn() -> torch.Tensor:
        return torch.randn(B, T, generator=gen, dtype=torch.float64)

    def padded(x: torch.Tensor) -> torch.Tensor:                                    # garbage at padding
        sign = torch.where(torch.rand(B, T, generator=junk) < 0.5, -1.0, 1.0).double()
        return torch.where(mask, x, sign * (10 + 20 * torch.rand(B, T, generator=junk, dtype=torch.float64)))

    logprobs = -0.05 - 3 * torch.rand(B, T, generator=gen, dtype=torch.float64)
    values = randn()
    batch = dict(mask=mask, scores=2 * torch.randn(B, generator=gen, dtype=torch.float64))
    batch["logprobs"] = padded(logprobs)
    batch["ref_logprobs"] = padded(logprobs + 0.5 * randn())
    batch["old_logprobs"] = padded(logprobs + 0.3 * randn())
    batch["advantages"] = padded(randn())
    batch["rewards"] = padded(randn())
    batch["values"] = padded(values)
    batch["old_values"] = padded(values + 0.3 * randn())
    batch["returns"] = padded(randn())
    batch["x"] = padded(2 + 3 * randn())
    return batch


def _fail(message: str) -> NoReturn:
    raise AssertionError(message)


def _fresh(arg):
    """A copy the student's code may modify in place (tensors that require grad are passed as they are)."""
    if isinstance(arg, torch.Tensor) and not arg.requires_grad:
        return arg.clone()
    return arg


def _call(fn: Callable, name: str, case: str, *args, **kwargs):
    """Run the student's ``fn`` on copies of the inputs; turn an exception into a diagnosis that names the input."""
    return _call_on_originals(fn, name, case, *map(_fresh, args), **{key: _fresh(value) for key, value in kwargs.items()})


def _call_on_originals(fn: Callable, name: str, case: str, *args, **kwargs):
    """``_call`` without the copies: for a probe that looks at whether ``fn`` changes its inputs."""
    try:
        return fn(*args, **kwargs)
    except NotImplementedError as error:
        detail = f" ({error})" if str(error) else ""
        raise AssertionError(f"{name} is not implemented yet{detail}: replace the "
                             "`raise NotImplementedError` with your code.") from error
    except Exception as error:
        raise AssertionError(f"{name} raised {type(error).__name__} on {case}: {error}") from error


def _tensor(out, name: str, shape: tuple, what: str = "its result") -> torch.Tensor:
    """The student's output as a detached float64 tensor of the expected shape."""
    if isinstance(out, (int, float)):
        out = torch.tensor(float(out))
    if not isinstance(out, torch.Tensor):
        _fail(f"{name} must return a tensor for {what}, got {type(out).__name__}.")
    if tuple(shape) == () and out.numel() == 1:
        out = out.reshape(())
    if tuple(out.shape) != tuple(shape):
        _fail(f"{name} returned {what} with shape {tuple(out.shape)}; expected {tuple(shape)}.")
    return out.detach().to(torch.float64)


def _loss(out, name: str) -> torch.Tensor:
    """The loss of a ``(loss, stats)`` pair (or a bare loss), still attached to its graph."""
    loss = out[0] if isinstance(out, (tuple, list)) else out
    if not isinstance(loss, torch.Tensor):
        _fail(f"{name} must return the loss as a tensor (to call .backward() on), got {type(loss).__name__}.")
    if loss.numel() != 1:
        _fail(f"{name} must return a scalar loss (a mean), got shape {tuple(loss.shape)}.")
    return loss.reshape(())


def _close(got, expected, rtol: float = RTOL, atol: float = ATOL) -> bool:
    got, expected = torch.as_tensor(got, dtype=torch.float64), torch.as_tensor(expected, dtype=torch.float64)
    return got.shape == expected.shape and bool(torch.allclose(got, expected, rtol=rtol, atol=atol))


def _diff(got, expected) -> str:
    difference = (torch.as_tensor(got, dtype=torch.float64) - torch.as_tensor(expected, dtype=torch.float64)).abs()
    return f"max abs diff {difference.max().item():.3g}"


def _rounded(x: torch.Tensor) -> list:
    """A small tensor as nested lists of short numbers, for messages."""
    return [_rounded(row) for row in x] if x.dim() > 1 else [round(v, 4) + 0.0 for v in x.tolist()]


def _rows(batch: dict, rows: slice) -> dict:
    return {key: value[rows] for key, value in batch.items()}


def _masked_loss_probes(run: Callable, reference: Callable, name: str, seed: int) -> None:
    """Probes shared by the losses that average a per-token term over valid tokens.

    ``run(batch)`` and ``reference(batch)`` return the student's and the reference's loss (float64).
    """
    batch = random_batch(seed)
    got, expected = run(batch), reference(batch)
    n_valid, n_all = int(batch["mask"].sum()), batch["mask"].numel()
    if not _close(run(random_batch(seed, garbage=1)), got):
        _fail(f"padding leaks into {name}: the loss changes when only the padded positions change. "
              "Average over valid tokens only (a masked mean; set padding to 0 with torch.where).")
    if _close(got, expected * n_valid / n_all) and not _close(expected, expected * n_valid / n_all):
        _fail(f"{name} divides by all B·T entries, so padding counts in the mean: divide by the number "
              "of valid tokens, mask.sum().")
    if _close(got, expected * n_valid):
        _fail(f"{name} is a sum where it must be a mean: divide by the number of valid tokens.")
    per_row = torch.stack([reference(_rows(batch, slice(b, b + 1))) for b in range(batch["mask"].shape[0])]).mean()
    if _close(got, per_row) and not _close(expected, per_row):
        _fail(f"{name} averages each row first and then the rows: the mean is over all valid tokens of "
              "the batch (one masked mean), so long responses weigh more.")


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


# --------------------------------------------------------------------------------------------------
# Stage 3: the RL reward, KL estimators, GAE, whitening
# --------------------------------------------------------------------------------------------------

def check_rlhf_rewards(rlhf_rewards: Callable) -> None:
    """Check ``rlhf_rewards(scores, logprobs, ref_logprobs, mask, kl_coef)`` (InstructGPT eq. 2)."""
    name = "rlhf_rewards"

    def run(batch, kl_coef, case):
        out = _call(rlhf_rewards, name, case, batch["scores"], batch["logprobs"], batch["ref_logprobs"],
                    batch["mask"], kl_coef)
        return _tensor(out, name, batch["mask"].shape)

    def reference(batch, kl_coef):
        return losses.rlhf_rewards(batch["scores"], batch["logprobs"], batch["ref_logprobs"], batch["mask"],
                                   kl_coef)

    # β = 0 and log π = log π_ref: the reward is the score at each row's last valid token, 0 elsewhere.
    batch = random_batch(1, B=3, T=5)
    batch["mask"] = torch.arange(5)[None, :] < torch.tensor([[1], [3], [4]])
    batch["logprobs"] = batch["ref_logprobs"].clone()
    batch["scores"] = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    got = run(batch, 0.0, "kl_coef = 0, rows of 1, 3 and 4 tokens out of 5")
    last = torch.tensor([0, 2, 3])
    rows = torch.arange(3)
    scores = batch["scores"]
    if _close(got[rows, 4], scores) and not _close(got[rows, last], scores):
        _fail("the score must be added at the last *valid* token, not the last column: for a row of "
              "n tokens that is index n − 1 (the rest is padding).")
    if _close(got[rows, last + 1], scores):
        _fail("off by one: the last valid token of a row is at index mask.sum(1) − 1, and the score "
              "goes there; you put it on the first padded position.")
    if _close(got[1, :3], scores[1].expand(3)):
        _fail("the score is added to every token: r_θ(x, y) judges the whole response, so it is "
              "added once, at the last valid token (the rest of the reward is the KL penalty).")
    if not _close(got[batch["mask"]], reference(batch, 0.0)[batch["mask"]]):
        _fail("with kl_coef = 0 and log π = log π_ref the reward must be the score at each row's last "
              f"valid token and 0 at the other valid tokens; for rows of 1, 3 and 4 tokens and scores 1, 2, 3 "
              f"yours is {_rounded(got)}.")
    full = random_batch(2, B=2, T=4)
    full["mask"] = torch.ones(2, 4, dtype=torch.bool)
    run(full, 0.1, "a batch of full rows (the last valid token is the last column)")
    run(random_batch(0), 0.1, "a random batch")

    # Tokens more likely under the policy than under the reference cost reward.
    batch = random_batch(3, B=2, T=3)
    batch["mask"] = torch.ones(2, 3, dtype=torch.bool)
    batch["scores"] = torch.zeros(2, dtype=torch.float64)
    batch["logprobs"] = batch["ref_logprobs"] + 0.5
    got = run(batch, 0.2, "scores 0, log π − log π_ref = 0.5 on every token, kl_coef = 0.2")
    if (got > 0).all():
        _fail("the KL penalty has the wrong sign: a token more likely under the policy than under the "
              "reference should lower the reward. R_t = −β·(log π − log π_ref) + score at the end.")
    if _close(got[:, :-1], torch.full_like(got[:, :-1], -0.1)) and _close(got[:, -1], torch.zeros(2)):
        _fail("at the last token the score replaces the KL penalty: add it, R_T = −β·(log π − log π_ref) + "
              "r_θ(x, y).")
    if _close(got, torch.full_like(got, -0.5)):
        _fail("the KL penalty is not scaled by kl_coef: R_t = −β·(log π − log π_ref).")
    if not _close(got, torch.full_like(got, -0.1)):
        _fail("with score 0, log π − log π_ref = 0.5 on every token and kl_coef = 0.2, every token's "
              f"reward must be −β·0.5 = −0.1 (the per-token penalty, k1); yours is {_rounded(got)}.")

    batch = random_batch(4)
    got = run(batch, 0.1, "a random batch")
    if not _close(got[~batch["mask"]], torch.zeros(int((~batch["mask"]).sum()), dtype=torch.float64)):
        _fail("rewards at padded positions are not 0: set them to 0 (torch.where(mask, ..., 0.0)).")

    for seed in range(20):
        batch, kl_coef = random_batch(seed), (0.0, 0.05, 0.2, 1.0)[seed % 4]
        got = run(batch, kl_coef, f"random batch {seed}, kl_coef = {kl_coef}")
        expected = reference(batch, kl_coef)
        if not _close(got, expected):
            _fail(f"rlhf_rewards does not match the reference on random batch {seed} (kl_coef = {kl_coef}, "
                  f"{_diff(got, expected)}).")
    print("✓ rlhf_rewards matches the reference on 20 random batches (β = 0 to 1, ragged rows)")


_KL_FORMULAS = {"k1": "k1 = −log r", "k2": "k2 = ½(log r)²", "k3": "k3 = (r − 1) − log r"}


def check_kl_per_token(kl_per_token: Callable, estimators: tuple[str, ...] = ("k1", "k2", "k3")) -> None:
    """Check ``kl_per_token(logprobs, ref_logprobs, estimator)`` for each of ``estimators``."""
    name = "kl_per_token"
    gen = torch.Generator().manual_seed(0)
    logprobs = -0.05 - 3 * torch.rand(6, 8, generator=gen, dtype=torch.float64)
    ref_logprobs = logprobs + 1.5 * torch.randn(6, 8, generator=gen, dtype=torch.float64)
    log_r = ref_logprobs - logprobs
    for estimator in estimators:
        case = f"estimator={estimator!r}, random log-probs"
        got = _tensor(_call(kl_per_token, name, case, logprobs, ref_logprobs, estimator), name, logprobs.shape)
        expected = losses.kl_per_token(logprobs, ref_logprobs, estimator)
        if _close(got, expected):
            continue
        if estimator == "k1" and _close(got, -expected):
            _fail("k1 has the wrong sign: k1 = −log r = log π − log π_ref (log r = log π_ref − log π), "
                  "positive where the policy is more likely than the reference.")
        if estimator == "k2" and _close(got, 2 * expected):
            _fail("k2 is ½(log r)²: you are missing the ½.")
        if estimator == "k3":
            if _close(got, torch.expm1(-log_r) + log_r):
                _fail("k3 uses the log-ratio the wrong way round: log r = log π_ref − log π (reference "
                      "over policy, for samples from π), and k3 = (r − 1) − log r.")
            for other in ("k1", "k2"):
                if _close(got, losses.kl_per_token(logprobs, ref_logprobs, other)):
                    _fail(f"for estimator='k3' you return {other}: k3 = (r − 1) − log r with r = π_ref/π.")
        _fail(f"estimator={estimator!r} does not match the reference ({_diff(got, expected)}): "
              f"{_KL_FORMULAS[estimator]}, with log r = log π_ref − log π.")

    if "k3" in estimators:      # log-ratios near 0, where e^d − 1 − d cancels catastrophically
        tiny = torch.logspace(-6, -1, 40, dtype=torch.float64)
        for dtype in (torch.float32, torch.float64):
            d = torch.cat([tiny, -tiny]).to(dtype)                       # log r
            logprobs = torch.full_like(d, -1.0)
            case = f"estimator='k3', {dtype} log-ratios between ±1e-6 and ±0.1"
            got = _tensor(_call(kl_per_token, name, case, logprobs, logprobs + d, "k3"), name, d.shape)
            d = ((logprobs + d) - logprobs).double()                     # the log r the function sees
            exact = losses.kl_per_token(torch.zeros_like(d), d, "k3")    # a few ulp of float64
            eps = torch.finfo(dtype).eps
            if (got < 0).any():
                i = int(torch.nonzero(got < 0)[0])
                _fail(f"k3 is negative somewhere: {got[i].item():.3g} at log r = {d[i].item():.3g} ({dtype}); "
                      "(r − 1) − log r ≥ 0 always, but exp(d) − 1 − d cancels catastrophically near 0. "
                      "Use torch.expm1(d) − d.")
            bad = (got - exact).abs() > 8 * eps * (d.abs() + exact) + 1e-300
            if bad.any():
                i = int(torch.nonzero(bad)[0])
                _fail(f"k3 is inaccurate near 0: {got[i].item():.4g} at log r = {d[i].item():.3g} ({dtype}), "
                      f"exact {exact[i].item():.4g}. exp(d) − 1 loses the digits of d; use torch.expm1(d) − d.")
    print(f"✓ kl_per_token matches the reference for {', '.join(estimators)}"
          + (" (k3 accurate near 0 in float32 and float64)" if "k3" in estimators else ""))


def check_compute_gae(compute_gae: Callable) -> None:
    """Check ``compute_gae(rewards, values, mask, gamma, lam) -> (advantages, returns)``."""
    name = "compute_gae"

    def run(batch, gamma, lam, case):
        out = _call(compute_gae, name, case, batch["rewards"], batch["values"], batch["mask"], gamma=gamma, lam=lam)
        if not (isinstance(out, (tuple, list)) and len(out) == 2):
            _fail("compute_gae must return a pair (advantages, returns), two (B, T) tensors.")
        shape = batch["mask"].shape
        return _tensor(out[0], name, shape, "the advantages"), _tensor(out[1], name, shape, "the returns")

    def reference(batch, gamma, lam):
        return losses.compute_gae(batch["rewards"], batch["values"], batch["mask"], gamma=gamma, lam=lam)

    run(random_batch(0), 1.0, 0.95, "a random batch")

    batch = random_batch(1)
    valid = batch["mask"]
    advantages, _ = run(batch, 0.9, 0.5, "gamma = 0.9, lam = 0.5")
    if (_close(advantages[valid], reference(batch, 0.5, 0.9)[0][valid])
            and not _close(advantages[valid], reference(batch, 0.9, 0.5)[0][valid])):
        _fail("γ and λ are swapped: δ_t = r_t + γ·V_{t+1} − V_t discounts with γ, and the recursion "
              "A_t = δ_t + γλ·A_{t+1} uses γ·λ.")

    # λ = 0: A_t = δ_t. Raising V_2 by 1 must change A_1 by +γ and A_2 by −1, and nothing else.
    line = random_batch(2, B=1, T=5)
    line["mask"][:] = True
    raised = dict(line, values=line["values"].clone())
    raised["values"][0, 2] += 1.0
    change = (run(raised, 1.0, 0.0, "lam = 0, a full row")[0] - run(line, 1.0, 0.0, "lam = 0, a full row")[0])[0]
    if _close(change, torch.tensor([0.0, -1.0, 1.0, 0.0, 0.0])):
        _fail("δ has the wrong sign: δ_t = r_t + γ·V_{t+1} − V_t, positive when the step went better "
              "than the value head expected.")
    if not _close(change, torch.tensor([0.0, 1.0, -1.0, 0.0, 0.0])):
        _fail("off by one: δ_t uses V_{t+1}, the value of the *next* token: δ_t = r_t + γ·V_{t+1} − V_t. "
              f"With λ = 0, raising V_2 by 1 must change A_1 by +1 and A_2 by −1; yours changes A by "
              f"{[round(x, 3) for x in change.tolist()]}.")
    advantages, _ = run(batch, 1.0, 0.0, "lam = 0, ragged rows with large values in the padding")
    expected = reference(batch, 1.0, 0.0)[0]
    wrong = valid & ~torch.isclose(advantages, expected, rtol=RTOL, atol=ATOL)
    is_last = valid & ~torch.cat([valid[:, 1:], torch.zeros_like(valid[:, :1])], 1)
    if wrong.any() and not (wrong & ~is_last).any():
        _fail("the episode should end after the last valid token: the next value there is 0 "
              "(V_{t+1} = 0 and A_{t+1} = 0), not the value of a padded position or of the next column.")
    if wrong.any():
        b, t = (int(i) for i in torch.nonzero(wrong)[0])
        _fail(f"with λ = 0 the advantage is the TD error A_t = δ_t = r_t + γ·V_{{t+1}} − V_t; at row {b}, "
              f"t = {t} it should be {expected[b, t].item():.4g}, yours is {advantages[b, t].item():.4g}.")

    advantages, _ = run(batch, 0.5, 1.0, "gamma = 0.5, lam = 1")
    if not _close(advantages[valid], reference(batch, 0.5, 1.0)[0][valid]):
        _fail("the recursion A_t = δ_t + γλ·A_{t+1} is wrong: with λ = 1, γ = 0.5, A_t must be the "
              "discounted return Σ_k γ^k r_{t+k} − V_t. Check that it runs backwards in time "
              "(t = T−1 down to 0) and multiplies A_{t+1} by γ·λ.")

    advantages, returns = run(batch, 1.0, 0.95, "a random batch")
    padding = ~valid
    if not _close(advantages[padding], torch.zeros(int(padding.sum()), dtype=torch.float64)):
        _fail("advantages at padded positions are not 0: set them to 0 (torch.where(mask, ..., 0.0)).")
    if not _close(returns[padding], torch.zeros(int(padding.sum()), dtype=torch.float64)):
        _fail("returns at padded positions are not 0: set them to 0 (torch.where(mask, ..., 0.0)).")
    if not _close(returns[valid], (advantages + batch["values"])[valid]):
        _fail("the returns must be advantages + values, R_t = A_t + V_t (the λ-return, the value "
              "head's target), not the discounted sum of rewards.")

    for seed in range(40):
        batch = random_batch(seed, B=3 + seed % 3, T=4 + seed % 5)
        gamma, lam = (1.0, 0.9, 0.99, 1.0)[seed % 4], (0.95, 0.0, 1.0, 0.5, 0.8)[seed % 5]
        case = f"random batch {seed} (gamma = {gamma}, lam = {lam})"
        got, expected = run(batch, gamma, lam, case), reference(batch, gamma, lam)
        for what, got, expected in zip(("advantages", "returns"), got, expected):
            if not _close(got, expected):
                _fail(f"compute_gae's {what} do not match the reference on {case} ({_diff(got, expected)}).")
    print("✓ compute_gae matches the reference on 40 random batches")


def check_whiten(whiten: Callable) -> None:
    """Check ``whiten(x, mask=None, shift_mean=True)`` against ``losses.whiten``."""
    name = "whiten"

    def run(x, mask, shift_mean=True, case="a random batch"):
        return _tensor(_call(whiten, name, case, x, mask, shift_mean=shift_mean), name, x.shape)

    batch = random_batch(0)
    x, mask = batch["x"], batch["mask"]
    got = run(x, mask)
    expected = losses.whiten(x, mask)

    rows = random_batch(1, B=3, T=6)
    rows["mask"][:, :3] = True                                  # ≥ 3 valid entries per row
    rows_x = torch.where(rows["mask"], rows["x"], 0.0)
    per_row = torch.cat([losses.whiten(rows_x[b:b + 1], rows["mask"][b:b + 1]) for b in range(3)])
    got_rows = run(rows["x"], rows["mask"], case="rows of 3 to 6 valid entries")
    if _close(got_rows[rows["mask"]], per_row[rows["mask"]]):
        _fail("the statistics are per row: the mean and variance are over all valid entries of the "
              "batch (one mean, one variance).")

    everything = torch.ones(1, int(mask.sum()), dtype=torch.bool)
    alone = run(x[mask][None, :], everything, case="the valid entries alone")[0]
    other = run(random_batch(0, garbage=1)["x"], mask, case="the same batch with other padding")
    if not (_close(got[mask], alone) and _close(got[mask], other[mask])):
        _fail("padding leaks into the statistics: use only masked entries for the mean and variance "
              "(the valid entries must whiten the same with or without padding around them).")
    if not _close(got[~mask], torch.zeros(int((~mask).sum()), dtype=torch.float64)):
        _fail("whitened values at padded positions must be 0 (torch.where(mask, ..., 0.0)).")
    n = int(mask.sum())
    if _close(got, expected * math.sqrt(n / (n - 1))):                 # σ_biased = σ·sqrt((N−1)/N)
        _fail("use the unbiased variance (N−1), like the reference: Σ(x − μ)²/(N − 1) over the N valid "
              "entries (torch.var's default), not /N.")
    if not _close(got, expected):
        _fail(f"whiten does not match the reference on a random batch ({_diff(got, expected)}): "
              "(x − μ)/sqrt(σ² + 1e-8) with μ, σ² the masked mean and unbiased variance.")

    got = run(x, mask, shift_mean=False, case="shift_mean=False")
    expected = losses.whiten(x, mask, shift_mean=False)
    if not _close(got, expected):
        if _close(got[mask], losses.whiten(x, mask)[mask]):
            hint = "you return (x − μ)/σ, centred"
        else:
            hint = f"{_diff(got, expected)}"
        _fail(f"with shift_mean=False the result must add the mean back: (x − μ)/σ + μ, rescaled but "
              f"not centred (rewards keep their sign); {hint}.")

    constant = torch.full((2, 5), 2.0, dtype=torch.float64)
    got = run(constant, torch.ones(2, 5, dtype=torch.bool), case="all valid entries equal to 2")
    if not torch.isfinite(got).all():
        _fail("division by zero when all valid entries are equal (the variance is 0): add eps = 1e-8 "
              "to the variance inside the square root, as the reference does.")
    x_all = random_batch(2)["x"]
    got = _tensor(_call(whiten, name, "mask=None", x_all), name, x_all.shape)
    if not _close(got, losses.whiten(x_all)):
        _fail("whiten(x) with mask=None must treat every entry as valid.")

    for seed in range(10):
        batch = random_batch(seed, B=3 + seed % 3, T=4 + seed % 4)
        batch["mask"][:, :2] = True
        shift_mean = seed % 2 == 0
        got = run(batch["x"], batch["mask"], shift_mean, f"random batch {seed} (shift_mean={shift_mean})")
        expected = losses.whiten(batch["x"], batch["mask"], shift_mean)
        if not _close(got, expected):
            _fail(f"whiten does not match the reference on random batch {seed} (shift_mean={shift_mean}, "
                  f"{_diff(got, expected)}).")
    print("✓ whiten matches the reference on 10 random batches (masked, unbiased, shift_mean both ways)")


# --------------------------------------------------------------------------------------------------
# PPO losses
# --------------------------------------------------------------------------------------------------

def _gradient_and_stats_probes(call: Callable, reference: Callable, batch: dict, wrt: str, name: str) -> None:
    """The student's loss must carry the reference's gradient to ``batch[wrt]``; a ``clipfrac`` in its
    stats (if it returns one) must be the reference's. ``call`` and ``reference`` take a batch."""
    leaf = batch[wrt].clone().requires_grad_(True)
    out = call(dict(batch, **{wrt: leaf}))
    loss = _loss(out, name)
    if not loss.requires_grad:
        _fail(f"{name}'s loss carries no gradient to {wrt}: don't detach {wrt}, call .item(), or "
              "compute it under torch.no_grad().")
    (grad,) = torch.autograd.grad(loss, leaf, allow_unused=True)
    expected_leaf = batch[wrt].clone().requires_grad_(True)
    expected_loss, expected_stats = reference(dict(batch, **{wrt: expected_leaf}))
    (expected_grad,) = torch.autograd.grad(expected_loss, expected_leaf)
    if grad is None or not _close(grad, expected_grad):
        _fail(f"{name}'s loss has the right value but the wrong gradient with respect to {wrt}: is "
              "something detached that should not be, or clamped before the max?")
    stats = out[1] if isinstance(out, (tuple, list)) and len(out) > 1 else None
    if isinstance(stats, dict) and "clipfrac" in stats:
        got, expected = float(stats["clipfrac"]), expected_stats["clipfrac"]
        if not _close(got, expected):
            _fail(f"{name}: stats['clipfrac'] is {got:.4g}, the reference {expected:.4g}: the fraction "
                  "of valid tokens where the clipped term is strictly larger.")


def check_ppo_policy_loss(ppo_policy_loss: Callable) -> None:
    """Check ``ppo_policy_loss(logprobs, old_logprobs, advantages, mask, clip_range)`` (PPO eq. 7)."""
    name = "ppo_policy_loss"

    def call(batch, clip_range=0.2, case="a random batch"):
        return _call(ppo_policy_loss, name, case, batch["logprobs"], batch["old_logprobs"],
                     batch["advantages"], batch["mask"], clip_range=clip_range)

    def run(batch, clip_range=0.2, case="a random batch"):
        return _tensor(_loss(call(batch, clip_range, case), name), name, ())

    def reference_out(batch, clip_range=0.2):
        return losses.ppo_policy_loss(batch["logprobs"], batch["old_logprobs"], batch["advantages"],
                                      batch["mask"], clip_range)

    def reference(batch, clip_range=0.2):
        return reference_out(batch, clip_range)[0]

    run(random_batch(0))
    _masked_loss_probes(run, reference, name, seed=2)

    at_one = random_batch(1, B=2, T=3)                                  # ρ = 1, advantages > 0
    at_one["mask"][:] = True
    at_one["old_logprobs"] = at_one["logprobs"].clone()
    at_one["advantages"] = at_one["advantages"].abs() + 0.5
    value, mean_a = run(at_one, case="logprobs == old_logprobs"), at_one["advantages"].mean()
    if _close(value, mean_a):
        _fail("the loss has the wrong sign: PPO maximises A·ρ, so the loss to minimise is −A·ρ "
              "(the max of −A·ρ and −A·clip(ρ)).")
    if _close(value, 0.0):
        _fail("the loss is 0 at ρ = 1 (logprobs == old_logprobs): you use the log-ratio "
              "log π − log π_old where the loss needs the ratio ρ = exp(log π − log π_old).")
    if not _close(value, -mean_a):
        _fail(f"with logprobs == old_logprobs (ρ = 1) the loss must be −mean(A) = {-mean_a.item():.4g}; "
              f"yours is {value.item():.4g}.")

    # One token per case: A = ±1, ρ outside [1 − ε, 1 + ε] on either side.
    cases = [(1.0, 1.5, 0.2), (1.0, 0.5, 0.2), (-1.0, 1.5, 0.2), (-1.0, 0.5, 0.2), (1.0, 1.5, 0.3)]
    got, expected, with_min, without_clip, log_clipped, log_quotient = [], [], [], [], [], []
    for a, rho, eps in cases:
        old = torch.tensor([[math.log(0.4)]], dtype=torch.float64)
        quotient = (math.log(0.4) + math.log(rho)) / math.log(0.4)
        token = dict(logprobs=old + math.log(rho), old_logprobs=old, mask=torch.ones(1, 1, dtype=torch.bool),
                     advantages=torch.tensor([[a]], dtype=torch.float64))
        got.append(run(token, eps, f"one token with A = {a}, ρ = {rho}, clip_range = {eps}"))
        clipped = min(max(rho, 1 - eps), 1 + eps)
        expected.append(max(-a * rho, -a * clipped))
        with_min.append(min(-a * rho, -a * clipped))
        without_clip.append(-a * rho)
        log_clipped.append(max(-a * rho, -a * math.exp(min(max(math.log(rho), -eps), eps))))
        log_quotient.append(max(-a * quotient, -a * min(max(quotient, 1 - eps), 1 + eps)))
    got = torch.stack(got)
    if not _close(got, expected):
        if _close(got, log_quotient):
            _fail("ρ = π/π_old = exp(log π − log π_old), a ratio of probabilities, not a ratio of "
                  "log-probabilities (log π / log π_old).")
        if _close(got, with_min):
            _fail("clipping uses min instead of max in the loss (you are minimising −A·ρ, so take the "
                  "max of −A·ρ and −A·clip(ρ): the pessimistic bound of eq. 7).")
        if _close(got, without_clip):
            _fail("no clipping: for A > 0 and ρ > 1 + ε the token's loss must be −A·(1 + ε); use "
                  "max(−A·ρ, −A·clip(ρ, 1 − ε, 1 + ε)).")
        if _close(got, log_clipped):
            _fail("you clip the log-ratio to [−ε, ε]; clip the ratio ρ itself to [1 − ε, 1 + ε].")
        if _close(got[:4], expected[:4]):
            _fail("clip_range is ignored: with clip_range = 0.3 the ratio is clipped to [0.7, 1.3].")
        i = next(i for i in range(len(cases)) if not _close(got[i], expected[i]))
        a, rho, eps = cases[i]
        _fail(f"clipping is wrong on one side: for A = {a}, ρ = {rho}, ε = {eps} the token's loss is "
              f"max(−A·ρ, −A·clip(ρ, 1 − ε, 1 + ε)) = {expected[i]:.4g}; yours is {got[i].item():.4g}.")

    _gradient_and_stats_probes(call, reference_out, random_batch(3), "logprobs", name)

    _match_random_batches(run, reference, name, (0.2, 0.1, 0.3))
    print("✓ ppo_policy_loss matches the reference on 20 random batches (A of both signs, ρ in and out of the clip)")


def _match_random_batches(run, reference, name: str, clip_ranges: tuple, n: int = 20) -> None:
    """The clipped losses against the reference on `n` random batches, cycling through `clip_ranges`."""
    for seed in range(n):
        batch, clip_range = random_batch(seed), clip_ranges[seed % len(clip_ranges)]
        got, expected = run(batch, clip_range, f"random batch {seed}"), reference(batch, clip_range)
        if not _close(got, expected):
            _fail(f"{name} does not match the reference on random batch {seed} "
                  f"(clip_range = {clip_range}): {got.item():.6g} vs {expected.item():.6g}.")


def check_value_loss(value_loss: Callable) -> None:
    """Check ``value_loss(values, old_values, returns, mask, clip_range)`` against ``losses.value_loss``."""
    name = "value_loss"

    def call(batch, clip_range=0.2, case="a random batch"):
        return _call(value_loss, name, case, batch["values"], batch["old_values"], batch["returns"],
                     batch["mask"], clip_range=clip_range)

    def run(batch, clip_range=0.2, case="a random batch"):
        return _tensor(_loss(call(batch, clip_range, case), name), name, ())

    def reference_out(batch, clip_range=0.2):
        return losses.value_loss(batch["values"], batch["old_values"], batch["returns"], batch["mask"], clip_range)

    def reference(batch, clip_range=0.2):
        return reference_out(batch, clip_range)[0]

    run(random_batch(0))
    _masked_loss_probes(run, reference, name, seed=2)

    # One token per case (V_old, V, R, ε): values far from 0, near or far from the old values.
    cases = [(5.0, 5.1, 5.0, 0.2), (10.0, 11.0, 11.0, 0.2), (10.0, 9.0, 11.0, 0.2), (10.0, 11.0, 11.0, 0.5)]
    got, expected, clip_v, with_min, without_clip = [], [], [], [], []
    for v_old, v, r, eps in cases:
        token = {key: torch.tensor([[number]], dtype=torch.float64)
                 for key, number in dict(values=v, old_values=v_old, returns=r).items()}
        token["mask"] = torch.ones(1, 1, dtype=torch.bool)
        got.append(run(token, eps, f"one token with V_old = {v_old}, V = {v}, R = {r}, clip_range = {eps}"))
        v_clip = v_old + min(max(v - v_old, -eps), eps)
        expected.append(0.5 * max((v - r) ** 2, (v_clip - r) ** 2))
        clip_v.append(0.5 * max((v - r) ** 2, (min(max(v, -eps), eps) - r) ** 2))
        with_min.append(0.5 * min((v - r) ** 2, (v_clip - r) ** 2))
        without_clip.append(0.5 * (v - r) ** 2)
    got = torch.stack(got)
    if not _close(got, expected):
        if _close(got, 2 * torch.tensor(expected)):
            _fail("the value loss is missing the ½: loss = ½·mean_t max((V − R)², (V_clip − R)²).")
        if _close(got[0], clip_v[0]):
            _fail("you clip V itself; clip the change V − V_old: V_clip = V_old + clip(V − V_old, −ε, ε) "
                  "(values far from 0 but close to the old ones must not be clipped).")
        if _close(got, with_min):
            _fail("the value loss takes the min of the clipped and unclipped terms: take the max "
                  "(the pessimistic one), ½·max((V − R)², (V_clip − R)²).")
        if _close(got, without_clip):
            _fail("no clipping: when V moved more than ε from V_old towards R, the clipped term "
                  "(V_clip − R)² is larger and must win the max.")
        if _close(got[:3], expected[:3]):
            _fail("clip_range is ignored: with clip_range = 0.5, V may move up to 0.5 from V_old.")
        i = next(i for i in range(len(cases)) if not _close(got[i], expected[i]))
        v_old, v, r, eps = cases[i]
        _fail(f"for V_old = {v_old}, V = {v}, R = {r}, ε = {eps} the loss is "
              f"½·max((V − R)², (V_clip − R)²) = {expected[i]:.4g} with V_clip = V_old + clip(V − V_old, −ε, ε); "
              f"yours is {got[i].item():.4g}.")

    unmoved = random_batch(1, B=2, T=3)                                 # V = V_old: no clipping
    unmoved["mask"][:] = True
    unmoved["old_values"] = unmoved["values"].clone()
    value, expected = run(unmoved, case="values == old_values"), reference(unmoved)
    if not _close(value, expected):
        _fail(f"with values == old_values nothing is clipped and the loss is ½·mean_t (V − R)² = "
              f"{expected.item():.4g}; yours is {value.item():.4g}.")

    _gradient_and_stats_probes(call, reference_out, random_batch(3), "values", name)

    _match_random_batches(run, reference, name, (0.2, 0.1, 0.5))
    print("✓ value_loss matches the reference on 20 random batches (values near and far from the old values)")


# --------------------------------------------------------------------------------------------------
# The adaptive KL controller
# --------------------------------------------------------------------------------------------------

def check_kl_controller(controller_class: Callable) -> None:
    """Check a class like ``losses.AdaptiveKLController``: ``cls(init_kl_coef, target, horizon)``,
    ``.value`` (β) and ``.update(current_kl, n_steps)`` returning the new β."""
    name = getattr(controller_class, "__name__", "the controller")

    def make(init, target, horizon):
        controller = _call(controller_class, name, f"{name}({init}, {target}, {horizon})", init, target, horizon)
        if not hasattr(controller, "value"):
            _fail(f"{name} has no attribute `value`: keep the current β in self.value.")
        return controller

    def step(controller, kl, n_steps):
        case = f"update(current_kl={kl}, n_steps={n_steps})"
        returned = _call(controller.update, f"{name}.update", case, kl, n_steps)
        if returned is None or not _close(float(returned), float(controller.value), rtol=1e-12, atol=0):
            _fail(f"{name}.update must return the new β (self.value after the update), got {returned!r}.")
        return float(controller.value)

    def after(kl, n_steps, init=0.1, target=6.0, horizon=10_000):
        return step(make(init, target, horizon), kl, n_steps)

    def expected(kl, n_steps, init=0.1, target=6.0, horizon=10_000):
        reference = losses.AdaptiveKLController(init, target, horizon)
        return reference.update(kl, n_steps)

    if not _close(float(make(0.1, 6.0, 10_000).value), 0.1, rtol=1e-12, atol=0):
        _fail(f"{name}(0.1, ...).value must start at init_kl_coef = 0.1.")
    if after(6.6, 1000) < 0.1 or after(5.4, 1000) > 0.1:
        _fail("β moves the wrong way: when the KL is above the target β must grow (a stronger penalty "
              "pulls the policy back), and below the target it must shrink.")
    if not _close(after(6.6, 0), 0.1, rtol=1e-12, atol=0) or _close(after(6.6, 2000) - 0.1, after(6.6, 1000) - 0.1):
        _fail("the step is proportional to n_steps / horizon: β ← β·(1 + e·n_steps/horizon); "
              "with n_steps = 0 β must not move.")
    if _close(after(6.6, 1000), 0.1 + 0.1 * 1000 / 10_000, rtol=1e-9, atol=0):
        _fail("the update is multiplicative: β ← β·(1 + e·n_steps/horizon), not β + e·n_steps/horizon.")
    if not _close(after(6.6, 1000), expected(6.6, 1000), rtol=1e-9, atol=0):
        if _close(after(6.6, 1000), 0.1 * (1 + 0.2 * 0.1), rtol=1e-9, atol=0):
            _fail("the error is relative: e = KL/target − 1 (here 6.6/6 − 1 = 0.1), not KL − target.")
        _fail(f"for β = 0.1, KL = 6.6, target = 6, n_steps = 1000, horizon = 10000 the new β is "
              f"0.1·(1 + 0.1·0.1) = {expected(6.6, 1000):.6g}; yours is {after(6.6, 1000):.6g}.")
    for kl in (60.0, 0.0):
        if not _close(after(kl, 1000), expected(kl, 1000), rtol=1e-9, atol=0):
            _fail(f"β moved by more than the clip allows: with KL = {kl} and target 6 the error "
                  f"KL/target − 1 = {kl / 6 - 1:.3g} is clipped to [−0.2, 0.2], so β becomes "
                  f"{expected(kl, 1000):.6g}, not {after(kl, 1000):.6g}.")

    gen = torch.Generator().manual_seed(0)
    for init, target, horizon in ((0.15, 6.0, 10_000), (0.05, 1.0, 1000), (1.0, 3.0, 500), (0.0, 2.0, 100)):
        student, reference = make(init, target, horizon), losses.AdaptiveKLController(init, target, horizon)
        for i in range(30):
            kl = 3 * target * torch.rand((), generator=gen).item()
            n_steps = int(torch.randint(0, 512, (), generator=gen))
            got, want = step(student, kl, n_steps), reference.update(kl, n_steps)
            if not _close(got, want, rtol=1e-9, atol=1e-12):
                _fail(f"after {i + 1} updates (β₀ = {init}, target = {target}, horizon = {horizon}) "
                      f"β is {got:.6g}; the reference {want:.6g}.")
    print("✓ the KL controller matches the reference over 120 updates (above and below the target, clipped)")


def check_win_rate(win_rate: Callable) -> None:
    """Check a function like ``evaluate.win_rate``: ``win_rate(scores_a, scores_b, z=1.96)`` returning
    ``(rate, low, high)`` (or an object with ``.rate``, ``.low``, ``.high``) — A's win rate over B from
    paired scores, ties counted half, and the normal-approximation interval clipped to [0, 1]."""
    from .evaluate import win_rate as reference

    name = getattr(win_rate, "__name__", "win_rate")

    def run(a, b, z=None):
        case = f"scores_a={a}, scores_b={b}" + (f", z={z}" if z is not None else "")
        out = _call(win_rate, name, case, list(a), list(b)) if z is None else \
            _call(win_rate, name, case, list(a), list(b), z=z)
        if all(hasattr(out, key) for key in ("rate", "low", "high")):
            out = (out.rate, out.low, out.high)
        if not isinstance(out, (tuple, list)) or len(out) != 3:
            _fail(f"{name} must return (rate, low, high), got {out!r}.")
        try:
            return tuple(float(v) for v in out)
        except (TypeError, ValueError):
            _fail(f"{name} must return three numbers (rate, low, high), got {out!r}.")

    def expected(a, b, z=1.96):
        w = reference(list(a), list(b), z)
        return w.rate, w.low, w.high

    if run([3.0, 2.0], [1.0, 0.0])[0] < 0.5:
        _fail("A and B are swapped: the rate is how often A's score is *higher* than B's.")
    a, b = [2.0, 1.0, 1.0, 1.0, 0.0, 0.0], [1.0] * 6          # 1 win, 3 ties, 2 losses
    rate = run(a, b)[0]
    diagnoses = {1 / 6: "ties count as losses: a tie is worth ½ to each side, (wins + ½·ties) / n",
                 4 / 6: "ties count as wins: a tie is worth ½ to each side, (wins + ½·ties) / n",
                 1 / 3: "ties were dropped: they stay in n and count ½ each, (wins + ½·ties) / n"}
    for wrong_rate, diagnosis in diagnoses.items():
        if math.isclose(rate, wrong_rate, abs_tol=1e-9):
            _fail(f"{diagnosis} — for 1 win, 3 ties and 2 losses that is 2.5 / 6 = 0.417, not {rate:.3f}.")
    if not math.isclose(rate, 2.5 / 6, abs_tol=1e-9):
        _fail(f"for 1 win, 3 ties and 2 losses the win rate is (1 + ½·3) / 6 = 0.417, not {rate:.3f}.")

    # The interval: half-width z·s/√n, s the standard deviation of the outcomes (n − 1 or n both accepted).
    a, b = [1.0] * 9 + [0.0], [0.5] * 10                       # 9 wins of 10: the interval reaches past 1
    for scores_a, scores_b, end in ((a, b, "upper"), (b, a, "lower")):  # and 1 win of 10: below 0
        got = run(scores_a, scores_b)
        if got[2] > 1 + 1e-9 or got[1] < -1e-9:
            _fail(f"clip the interval to [0, 1]: a win rate lies in [0, 1], but with {got[0]:.0%} the {end} end "
                  f"is {got[2] if end == 'upper' else got[1]:.3f}.")

    def half_width_ratio(a, b, z=None):
        """The student's half-width over the reference's, on a case where neither interval is clipped."""
        got, want = run(a, b, z), expected(a, b, 1.96 if z is None else z)
        if not math.isclose((got[1] + got[2]) / 2, want[0], abs_tol=1e-6):
            _fail("the interval must be centred on the win rate: rate ± z·s/√n.")
        return (got[2] - got[1]) / (want[2] - want[1])

    n = 40                                                      # 2 wins, 2 losses, 36 ties: rate ½, s = 1/√39
    a, b = [1.0, 1.0, 0.0, 0.0] + [0.5] * 36, [0.0, 0.0, 1.0, 1.0] + [0.5] * 36
    ratio = half_width_ratio(a, b)
    if not (math.isclose(ratio, 1, rel_tol=1e-6) or math.isclose(ratio, math.sqrt((n - 1) / n), rel_tol=1e-6)):
        if math.isclose(ratio, 1.645 / 1.96, rel_tol=1e-3):
            _fail("z = 1.645 gives a 90 % interval; a 95 % interval needs z = 1.96.")
        if any(math.isclose(ratio, math.sqrt(m), rel_tol=1e-3) for m in (n, n - 1)):
            _fail("the half-width is z·s/√n: the spread of the *mean* of n outcomes, not of one outcome.")
        # binomial half-widths over the reference's z/√(39·40): from the rate of wins (p = 2/40) or from the rate (½)
        if any(math.isclose(ratio, r, rel_tol=1e-3) for r in (math.sqrt(0.05 * 0.95 * 39), math.sqrt(0.25 * 39))):
            _fail("the spread must come from the per-prompt outcomes (1, ½, 0), ties included: s is their "
                  "standard deviation; the binomial √(p(1 − p)/n) is right only without ties.")
        _fail(f"for 2 wins, 2 losses and 36 ties the 95 % interval is 0.5 ± 1.96·s/√40 with s = 1/√39 the "
              f"standard deviation of the outcomes; yours is {ratio:.3f}× as wide.")
    ratio = half_width_ratio(a, b, z=1.0)
    if math.isclose(ratio, 1.96, rel_tol=1e-3) or math.isclose(ratio, 1.96 * math.sqrt((n - 1) / n), rel_tol=1e-3):
        _fail("the z argument is ignored: with z = 1 the half-width is 1·s/√n.")

    gen = torch.Generator().manual_seed(0)
    for trial in range(30):
        n = int(torch.randint(8, 60, (), generator=gen))
        a = torch.randint(0, 4, (n,), generator=gen).double().tolist()   # few distinct values: many ties
        b = torch.randint(0, 4, (n,), generator=gen).double().tolist()
        z = 1.96 if trial % 3 else float(1 + torch.rand((), generator=gen))
        got, want = run(a, b, z), expected(a, b, z)
        population = expected(a, b, z * math.sqrt((n - 1) / n))         # the same with s over n, not n − 1
        if not any(_close(torch.tensor(got), torch.tensor(w), rtol=0, atol=1e-9) for w in (want, population)):
            _fail(f"on {n} random prompts (z = {z:.3f}) the win rate and interval are "
                  f"({want[0]:.4f}, {want[1]:.4f}, {want[2]:.4f}); yours ({got[0]:.4f}, {got[1]:.4f}, {got[2]:.4f}).")
    print("✓ win_rate matches the reference on 30 random comparisons (ties, the interval, clipping, z)")


# --------------------------------------------------------------------------------------------------
# How far best-of-n moves a policy
# --------------------------------------------------------------------------------------------------

def _best_of_n_kl_by_counting(n: int, n_answers: int = 100_000) -> float:
    """KL(best-of-n ‖ π) for a policy π with ``n_answers`` equally likely answers, all rewards different.

    Rank the answers from worst to best: the best of n draws is answer i or worse with probability (i/M)^n, so
    it is answer i with probability (i/M)^n − ((i−1)/M)^n. Exact for this π; as M grows it approaches the
    continuous case to within about n²/M² nats (4e-8 at n = 100, M = 1e5)."""
    cdf = torch.arange(n_answers + 1, dtype=torch.float64) / n_answers
    best = cdf[1:] ** n - cdf[:-1] ** n                                     # (M,): P(best of n = answer i)
    best = best[best > 0]
    return (best * torch.log(best * n_answers)).sum().item()               # Σ p_bon log(p_bon / (1/M))


def check_best_of_n_kl(best_of_n_kl: Callable) -> None:
    """Check ``best_of_n_kl(n)``: KL(best-of-n ‖ π) in nats when the n samples are never equal (the continuous
    limit), against the KL counted out for a policy with 100 000 equally likely answers."""
    name = getattr(best_of_n_kl, "__name__", "best_of_n_kl")

    def run(n):
        out = _call(best_of_n_kl, name, f"n = {n}", n)
        if isinstance(out, torch.Tensor) and out.numel() == 1:
            out = out.item()
        try:
            return float(out)
        except (TypeError, ValueError):
            _fail(f"{name} must return a number (the KL in nats), got {out!r}.")

    ns = (2, 4, 16, 64)
    got = {n: run(n) for n in ns}
    counted = {n: _best_of_n_kl_by_counting(n) for n in ns}

    def all_close(values, tolerance=1e-6):
        return all(math.isclose(got[n], value, rel_tol=0, abs_tol=tolerance) for n, value in zip(ns, values))

    if all_close([math.log(n) for n in ns]):
        _fail("you return log n, the KL of keeping only the best 1/n of π's answers (π conditioned on its top "
              "1/n): best-of-n gives a lower-ranked answer now and then, when all n samples are low. The KL is "
              "log n − (n − 1)/n, below log n.")
    if all_close([(n - 1) / n for n in ns]):
        _fail("you return (n − 1)/n alone: the KL is log n − (n − 1)/n; the log n term is missing.")
    if all_close([-counted[n] for n in ns]):
        _fail("the sign is flipped: a KL is ≥ 0. It is log n − (n − 1)/n (log n is the larger term for n ≥ 2).")
    if all_close([math.log2(n) - (n - 1) / n for n in ns]) or all_close([counted[n] / math.log(2) for n in ns]):
        _fail("you use log base 2: the course measures KL in nats, with the natural log (math.log), like every "
              "KL it prints.")
    if all_close([math.log(n) - 1 for n in ns]):
        _fail("log n − 1 is only the large-n limit: (n − 1)/n = 1 − 1/n, so best-of-2 is log 2 − ½ = 0.193 nats, "
              "not log 2 − 1 < 0. Keep (n − 1)/n.")
    for shift, words in ((1, "n + 1"), (-1, "n − 1")):
        if all_close([_best_of_n_kl_by_counting(n + shift) for n in ns], 1e-5):
            _fail(f"off by one: you compute the KL of best-of-({words}). n is the number of samples drawn; "
                  "best-of-1 is π itself (KL 0).")
    value = run(1)
    if not math.isclose(value, 0.0, abs_tol=1e-9):
        _fail(f"best-of-1 is the policy itself, so its KL must be 0; yours is {value:.4g}.")
    for n in (1, 2, 3, 5, 8, 16, 32, 64, 100):
        value, expected = run(n), _best_of_n_kl_by_counting(n)
        if not math.isclose(value, expected, rel_tol=0, abs_tol=1e-6):
            _fail(f"best-of-{n}: the KL is {expected:.6f} nats (counted out over 100 000 equally likely answers); "
                  f"yours is {value:.6f}. It is log n − (n − 1)/n.")
    value, expected = run(1000), _best_of_n_kl_by_counting(1000, 1_000_000)
    if not math.isclose(value, expected, rel_tol=0, abs_tol=1e-6):
        _fail(f"best-of-1000: the KL is {expected:.6f} nats; yours is {value:.6f}.")
    print("✓ best_of_n_kl matches the KL counted out over 100 000 equally likely answers for n = 1 to 1000")


# --------------------------------------------------------------------------------------------------
# Beyond PPO: DPO's loss, and the critic-free baselines
# --------------------------------------------------------------------------------------------------

def _dpo_batch(seed: int, B: int = 6) -> dict[str, torch.Tensor]:
    """Summed log-probs of B (chosen, rejected) answers under the policy and the reference, float64 (B,) each."""
    gen = torch.Generator().manual_seed(seed)
    ref_chosen = -20 - 10 * torch.rand(B, generator=gen, dtype=torch.float64)
    ref_rejected = -20 - 10 * torch.rand(B, generator=gen, dtype=torch.float64)
    return {"policy_chosen_logps": ref_chosen + 2 * torch.randn(B, generator=gen, dtype=torch.float64),
            "policy_rejected_logps": ref_rejected + 2 * torch.randn(B, generator=gen, dtype=torch.float64),
            "ref_chosen_logps": ref_chosen, "ref_rejected_logps": ref_rejected}


def check_dpo_loss(dpo_loss: Callable) -> None:
    """Check ``dpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta)``
    -> (loss, chosen_rewards, rejected_rewards) against ``losses.dpo_loss`` (Rafailov et al. 2023, eq. 7)."""
    name = "dpo_loss"
    keys = ("policy_chosen_logps", "policy_rejected_logps", "ref_chosen_logps", "ref_rejected_logps")

    def run(batch, beta, case="a random batch"):
        out = _call(dpo_loss, name, case, *(batch[key] for key in keys), beta)
        if not isinstance(out, (tuple, list)) or len(out) != 3:
            _fail(f"{name} must return three things: (loss, chosen_rewards, rejected_rewards), the mean loss and the "
                  "implicit rewards β·log π(y)/π_ref(y) of the chosen and the rejected answers.")
        B = len(batch[keys[0]])
        return (_tensor(_loss(out, name), name, (), "the loss"), _tensor(out[1], name, (B,), "chosen_rewards"),
                _tensor(out[2], name, (B,), "rejected_rewards"))

    batch, beta = _dpo_batch(0), 0.1
    loss, chosen, rejected = run(batch, beta)
    pc, pr, rc, rr = (batch[key] for key in keys)

    def terms(margin):                                # (B,) −log σ(margin): the per-pair loss
        return -F.logsigmoid(margin)

    margin = beta * ((pc - rc) - (pr - rr))
    suspects = [
        (terms(-margin).mean(), "the sign is flipped: the loss must fall as the chosen answer gains on the rejected "
                                "one. It is −log σ(β·(log π/π_ref of the chosen − log π/π_ref of the rejected)), "
                                "each log-ratio the policy's log-prob minus the reference's (not the other way)."),
        (terms(beta * (pc - pr)).mean(), "the reference is missing: DPO compares log-ratios log π(y)/π_ref(y), not "
                                         "log π(y) alone. Subtract ref_chosen_logps and ref_rejected_logps."),
        (terms(beta * ((pc - rr) - (pr - rc))).mean(), "the log-ratios mix the answers: the chosen answer's "
                                                       "log-ratio is policy_chosen − ref_chosen, the rejected "
                                                       "answer's policy_rejected − ref_rejected."),
        (terms((pc - rc) - (pr - rr)).mean(), "β is missing: the margin is β·(…), β = 0.1 here."),
        (beta * terms((pc - rc) - (pr - rr)).mean(), "β multiplies the margin inside log σ, not the loss outside it."),
        (terms(margin).sum(), "you sum over the batch: the loss is the mean over the pairs."),
        (terms(margin.mean()), "you average the margins before the log σ: take −log σ of each pair's margin, then "
                               "the mean over pairs."),
    ]
    expected = losses.dpo_loss(pc, pr, rc, rr, beta)[0]
    for value, diagnosis in suspects:
        if _close(loss, value) and not _close(value, expected):
            _fail(diagnosis)
    if not _close(loss, expected):
        _fail(f"the loss is {loss.item():.6g} on a random batch; eq. 7 gives {expected.item():.6g} "
              f"({_diff(loss, expected)}).")
    want_chosen, want_rejected = beta * (pc - rc), beta * (pr - rr)
    if _close(chosen, pc - rc) or _close(rejected, pr - rr):
        _fail("the implicit rewards miss β: they are β·log π(y)/π_ref(y).")
    if not (_close(chosen, want_chosen) and _close(rejected, want_rejected)):
        _fail("chosen_rewards and rejected_rewards must be the implicit rewards β·(log π(y) − log π_ref(y)) of the "
              "chosen and of the rejected answer, one per pair.")

    big = {key: batch[key].float() for key in keys}
    big["policy_chosen_logps"] = big["ref_chosen_logps"] - 3000.0                    # a margin of −300 at β = 0.1
    value = run(big, beta, "float32 log-probs whose margin is −300")[0]
    if not (torch.isfinite(value) and _close(value, losses.dpo_loss(*(big[k] for k in keys), beta)[0], rtol=1e-4)):
        _fail(f"the loss is {value.item():.4g} where one pair's margin is −300 in float32: log(sigmoid(x)) "
              "underflows to log 0. Use F.logsigmoid (or −F.softplus(−x)).")

    policy = {key: batch[key].clone().requires_grad_(key.startswith("policy")) for key in keys}
    out = _call(dpo_loss, name, "log-probs that require grad", *(policy[key] for key in keys), beta)
    _loss(out, name).backward()
    grad = policy["policy_chosen_logps"].grad
    want = -beta * torch.sigmoid(-margin) / len(margin)                                # d loss / d log π(y_w)
    if grad is None or not _close(grad, want):
        _fail("the gradient with respect to policy_chosen_logps is not eq. 7's: the loss must be built from the "
              "inputs with torch operations (no .item(), .detach() or torch.tensor(...) around them).")
    for reward in out[1:]:
        if isinstance(reward, torch.Tensor) and reward.requires_grad:
            _fail("the implicit rewards are statistics for the log: return them detached (.detach()), or a "
                  "caller's .backward() on them would train the policy by mistake.")

    for seed in range(1, 11):
        beta = (0.05, 0.1, 0.5, 1.0)[seed % 4]
        batch = _dpo_batch(seed, B=1 + seed)
        loss, chosen, rejected = run(batch, beta, f"random batch {seed}, β = {beta}")
        expected, want_chosen, want_rejected = losses.dpo_loss(*(batch[key] for key in keys), beta)
        if not (_close(loss, expected) and _close(chosen, want_chosen) and _close(rejected, want_rejected)):
            _fail(f"dpo_loss does not match eq. 7 on random batch {seed} (β = {beta}): loss {loss.item():.6g} vs "
                  f"{expected.item():.6g}.")
    print("✓ dpo_loss matches eq. 7 on 10 random batches (β = 0.05 to 1), its gradient, and margins of −300")


def _group_returns(seed: int, groups: int = 4, k: int = 4) -> torch.Tensor:
    """(groups·k,) returns, the k answers of each prompt in consecutive rows; groups sit at different levels."""
    gen = torch.Generator().manual_seed(seed)
    level = 5 * torch.randn(groups, 1, generator=gen, dtype=torch.float64)
    return (level + torch.randn(groups, k, generator=gen, dtype=torch.float64)).flatten()


def _advantage_probes(fn: Callable, name: str, reference: Callable, rtol: float) -> Callable:
    """Shared first probes of the two baselines: the result's shape, and inputs left as they were."""
    def run(returns, k, case="a random batch"):
        return _tensor(_call(fn, name, case, returns, k), name, tuple(returns.shape), "the advantages")

    returns = _group_returns(0)
    original = returns.clone()
    _call_on_originals(fn, name, "a random batch", returns, 4)
    if not torch.equal(returns, original):
        _fail(f"{name} changes its input in place (returns); compute the advantages in a new tensor.")
    got = run(returns, 4)
    strided = reference(returns.view(4, 4).t().flatten(), 4).view(4, 4).t().flatten()
    if _close(got, strided, rtol=rtol) and not _close(strided, reference(returns, 4), rtol=rtol):
        _fail("the groups are taken the wrong way: the k answers of one prompt are *consecutive* rows "
              "(returns.view(-1, k) puts each prompt's answers in one row), not every k-th row.")
    return run


def check_rloo_advantages(rloo_advantages: Callable) -> None:
    """Check ``rloo_advantages(returns, k)`` (B,) -> (B,) against ``losses.rloo_advantages`` (RLOO)."""
    name = "rloo_advantages"
    run = _advantage_probes(rloo_advantages, name, losses.rloo_advantages, RTOL)
    returns = _group_returns(0)
    got = run(returns, 4)
    groups = returns.view(-1, 4)
    if _close(got, (groups - groups.mean(1, keepdim=True)).flatten()):
        _fail("the baseline includes the answer itself (the group's mean): RLOO leaves it out — the baseline of "
              "answer i is the mean of the *other* k − 1 returns, (sum − R_i)/(k − 1). With itself in, the "
              "baseline depends on the answer's own sample, and every advantage shrinks by (k − 1)/k.")
    if _close(got, (groups - (groups.sum(1, keepdim=True) - groups) / 4).flatten()):
        _fail("you divide the others' sum by k: there are k − 1 other answers, so divide by k − 1.")
    if _close(got, returns - (returns.sum() - returns) / (len(returns) - 1)) or _close(got, returns - returns.mean()):
        _fail("the baseline is taken over the whole batch: it must come from the same prompt's other answers only "
              "(a prompt that is easy for every answer would otherwise look good for all of them).")
    std = groups.std(1, keepdim=True)
    if _close(got, losses.rloo_advantages(returns, 4) / std.repeat_interleave(4, 0).flatten(), rtol=1e-3):
        _fail("you divide by the group's standard deviation: that is GRPO's advantage. RLOO's is the return "
              "minus the mean of the others, unscaled.")
    same = torch.full((8,), 3.5, dtype=torch.float64)
    value = run(same, 4, "equal returns")
    if not _close(value, torch.zeros(8)):
        _fail(f"equal returns must give advantages of 0 (no answer better than the others); yours are "
              f"{_rounded(value)}.")
    for seed in range(1, 11):
        k = 2 + seed % 4
        returns = _group_returns(seed, groups=1 + seed % 3, k=k)
        got, expected = run(returns, k, f"random batch {seed} (k = {k})"), losses.rloo_advantages(returns, k)
        if not _close(got, expected):
            _fail(f"rloo_advantages does not match the reference on random batch {seed} (k = {k}): "
                  f"{_diff(got, expected)}.")
    print("✓ rloo_advantages matches the leave-one-out baseline on 10 random batches (k = 2..5) and equal returns")


def check_grpo_advantages(grpo_advantages: Callable) -> None:
    """Check ``grpo_advantages(returns, k)`` (B,) -> (B,) against ``losses.grpo_advantages`` (GRPO). The eps that
    keeps 0/0 away may sit anywhere small: answers within 1e-3 of the reference pass."""
    name, rtol = "grpo_advantages", 1e-3
    run = _advantage_probes(grpo_advantages, name, losses.grpo_advantages, rtol)
    returns = _group_returns(0)
    got = run(returns, 4)
    groups = returns.view(-1, 4)
    centred = groups - groups.mean(1, keepdim=True)
    if _close(got, centred.flatten(), rtol=rtol):
        _fail("the advantages are centred but not scaled: divide by the group's standard deviation (+ eps).")
    if _close(got, (centred / returns.std()).flatten(), rtol=rtol):
        _fail("the standard deviation is the whole batch's: GRPO scales by each group's own std (over the k "
              "answers to the same prompt), so hard and easy prompts push equally.")
    if _close(got, ((returns - returns.mean()) / returns.std()), rtol=rtol):
        _fail("mean and std are the whole batch's: GRPO normalises within each group of k answers to one prompt.")
    if _close(got, (centred / groups.std(1, keepdim=True, unbiased=False)).flatten(), rtol=rtol):
        _fail("the standard deviation divides by k: use the sample std (k − 1), torch.std's default, as GRPO's "
              "implementations do.")
    same = torch.cat([torch.full((4,), 2.0, dtype=torch.float64), torch.tensor([1.0, 2.0, 3.0, 4.0],
                                                                               dtype=torch.float64)])
    value = run(same, 4, "a group of four equal returns")
    if not torch.isfinite(value).all():
        _fail("a group whose k returns are all equal gives NaN (0/0): add a small eps to the std, "
              "(R − mean)/(std + eps), so such a group gets advantages of 0.")
    if not _close(value[:4], torch.zeros(4), atol=1e-6):
        _fail(f"a group of equal returns must get advantages of 0; yours are {_rounded(value[:4])}.")
    for seed in range(1, 11):
        k = 2 + seed % 4
        returns = _group_returns(seed, groups=1 + seed % 3, k=k)
        got, expected = run(returns, k, f"random batch {seed} (k = {k})"), losses.grpo_advantages(returns, k)
        if not _close(got, expected, rtol=rtol, atol=1e-4):
            _fail(f"grpo_advantages does not match the reference on random batch {seed} (k = {k}): "
                  f"{_diff(got, expected)}.")
    print("✓ grpo_advantages matches the group-normalised baseline on 10 random batches (k = 2..5) and equal returns")


CHECKS: dict[str, Callable] = {
    "temperature_probs": check_temperature_probs,
    "sft_loss": check_sft_loss,
    "ranking_loss": check_ranking_loss,
    "rlhf_rewards": check_rlhf_rewards,
    "kl_per_token": check_kl_per_token,
    "compute_gae": check_compute_gae,
    "whiten": check_whiten,
    "ppo_policy_loss": check_ppo_policy_loss,
    "value_loss": check_value_loss,
    "kl_controller": check_kl_controller,
    "win_rate": check_win_rate,
    "best_of_n_kl": check_best_of_n_kl,
    "dpo_loss": check_dpo_loss,
    "rloo_advantages": check_rloo_advantages,
    "grpo_advantages": check_grpo_advantages,
}


# The library's code that solves each exercise: (module, qualified name). A student copy must never show it.
REFERENCES: dict[str, tuple[str, str]] = {
    "temperature_probs": ("rlhf_core.sequences", "_next_token"),            # divides by T, softmax, samples
    "sft_loss": ("rlhf_core.losses", "sft_loss"),
    "ranking_loss": ("rlhf_core.losses", "ranking_loss"),
    "rlhf_rewards": ("rlhf_core.losses", "rlhf_rewards"),
    "kl_per_token": ("rlhf_core.losses", "kl_per_token"),
    "compute_gae": ("rlhf_core.losses", "compute_gae"),
    "whiten": ("rlhf_core.losses", "whiten"),
    "ppo_policy_loss": ("rlhf_core.losses", "ppo_policy_loss"),
    "value_loss": ("rlhf_core.losses", "value_loss"),
    "kl_controller": ("rlhf_core.losses", "AdaptiveKLController.update"),   # the exercise writes `update`
    "win_rate": ("rlhf_core.evaluate", "win_rate"),
    "best_of_n_kl": ("rlhf_core.evaluate", "best_of_n_kl"),
    "dpo_loss": ("rlhf_core.losses", "dpo_loss"),
    "rloo_advantages": ("rlhf_core.losses", "rloo_advantages"),
    "grpo_advantages": ("rlhf_core.losses", "grpo_advantages"),
}


def reference(exercise: str) -> Callable:
    """The library's function that solves ``exercise`` (a key of ``CHECKS``)."""
    module, qualname = REFERENCES[exercise]
    found = importlib.import_module(module)
    for name in qualname.split("."):
        found = getattr(found, name)
    return found


# --------------------------------------------------------------------------------------------------
# Student copies: strip nbgrader's solution regions, leave out the library's solutions
# --------------------------------------------------------------------------------------------------

def _marker(words: str) -> re.Pattern:
    return re.compile(rf"^(?P<indent>[ \t]*)#+[ \t]*{words}[ \t]*$")


_BEGIN = {"solution": _marker("BEGIN SOLUTION"), "hidden tests": _marker("BEGIN HIDDEN TESTS")}
_END = {"solution": _marker("END SOLUTION"), "hidden tests": _marker("END HIDDEN TESTS")}
GENERIC_TITLE = "Exercise: replace this line with your solution"


def strip_solutions(source: str, title: str = GENERIC_TITLE) -> str:
    """The student's version of a code cell's source.

    Each region from a ``### BEGIN SOLUTION`` line to its ``### END SOLUTION`` line (inclusive) becomes
    one line, ``raise NotImplementedError(title)``, at the markers' indentation; each
    ``### BEGIN HIDDEN TESTS`` ... ``### END HIDDEN TESTS`` region is removed. Code before and after
    (the ``def`` line, the docstring) stays. Unbalanced or nested markers raise ValueError.
    """
    out: list[str] = []
    region, opened_at = None, 0
    for number, line in enumerate(source.split("\n"), 1):
        begins = [kind for kind, pattern in _BEGIN.items() if pattern.match(line)]
        ends = [kind for kind, pattern in _END.items() if pattern.match(line)]
        if begins:
            if region:
                raise ValueError(f"line {number}: BEGIN {begins[0].upper()} inside the {region} region "
                                 f"opened on line {opened_at}; close it first.")
            region, opened_at = begins[0], number
            if region == "solution":
                indent = _BEGIN["solution"].match(line)["indent"]
                out.append(f"{indent}raise NotImplementedError({_string_literal(title)})")
        elif ends:
            if region != ends[0]:
                kind = ends[0].upper()
                raise ValueError(f"line {number}: END {kind} without a matching BEGIN {kind}.")
            region = None
        elif region is None:
            out.append(line)
    if region:
        raise ValueError(f"line {opened_at}: BEGIN {region.upper()} has no matching END {region.upper()}.")
    return "\n".join(out)


def _string_literal(text: str) -> str:
    """``text`` as a Python string literal, in double quotes where it can be."""
    plain = '"' not in text and "\\" not in text and text.isprintable()
    return f'"{text}"' if plain else repr(text)


def _has_solution(cell) -> bool:
    lines = cell.get("source", "").split("\n")
    return cell.get("cell_type") == "code" and any(_BEGIN["solution"].match(line) for line in lines)


def exercise_title(cells: list, index: int) -> str:
    """The message for the exercise in ``cells[index]``: the nearest markdown cell above it that opens with a
    header gives its last header ("### Exercise — implement `compute_gae`" gives "Exercise — implement
    `compute_gae`"; a cell "## Exercises" with a "### Exercise — ..." under it gives the latter; another
    header gets "Exercise: " in front), or a generic text if there is none."""
    for cell in reversed(cells[:index]):
        if cell.get("cell_type") != "markdown":
            continue
        lines = [line.strip() for line in cell.get("source", "").split("\n") if line.strip()]
        if not lines or not lines[0].startswith("#"):
            continue
        headers, fenced = [], False
        for line in lines:
            fenced ^= line.startswith("```")                      # a "# comment" in a code block is no header
            if not fenced and line.startswith("#"):
                headers.append(line.lstrip("#").strip().rstrip("#").strip())
        header = next((h for h in reversed(headers) if h), "")
        if header:
            return header if header.lower().startswith("exercise") else f"Exercise: {header}"
    return GENERIC_TITLE


SOURCE_TAG = "library-source"   # a cell tag: shown in the instructor copy only (the library's code, its walkthrough)
LIBRARY_NOTE = "*(The library's version is shown here in the instructor copy.)*"

# Ways a cell can print code: inspect's functions, IPython's %psource/%pfile/%pycat/%load and `obj??`, reading a file.
_SHOWS_CODE = re.compile(r"\b(?:getsource|getsourcelines|findsource|getblock)\b|%(?:psource|pfile|pycat|load)\b"
                         r"|^\s*(?:\?\?[\w.]+|[\w.]+\?\?)\s*$", re.M)
_READS_FILE = re.compile(r"\bopen\(|\bread_text\(|\bfrom_file\(|%(?:pycat|load)\b|^\s*!\s*(?:cat|less|head)\b", re.M)


def shown_references(source: str) -> list[str]:
    """The exercises whose reference solution the code cell ``source`` would print, in ``CHECKS`` order.

    A cell counts when it prints code (``inspect.getsource`` and friends, ``%psource``, ``%pfile``,
    ``%pycat``, ``%load``, ``obj??``) and names a reference — ``sft_loss``, ``AdaptiveKLController``, ... —
    anywhere (so a loop over several functions counts too), or shows a whole module that holds one
    (``getsource(rlhf_core.losses)``, ``%pfile rlhf_core.losses``, ``open(".../losses.py")``). Printing
    other code (``PPOTrainer.update``, a config) does not count, nor does calling a reference.
    """
    shows_code, reads_file = _SHOWS_CODE.search(source), _READS_FILE.search(source)
    if not (shows_code or reads_file):
        return []
    words = set(re.findall(r"[A-Za-z_]\w*", source))
    shown = []
    for exercise, (module, qualname) in REFERENCES.items():
        short = module.rsplit(".", 1)[1]                                        # "losses"
        module_shown = shows_code and re.search(
            rf"(?:getsource\w*\(|%p(?:source|file)|%load)\s*(?:[\w.]+\.)?{short}\s*(?:\)|$)", source, re.M)
        file_read = reads_file and re.search(rf"\b{short}\.py\b", source)
        if module_shown or file_read or (shows_code and qualname.split(".")[0] in words):
            shown.append(exercise)
    return shown


def _only_displays(source: str) -> bool:
    """Whether a cell only prints: it binds no name (an assignment, import, def or class) that later cells
    could need. IPython syntax (%magics, obj??) is not Python and counts as a display."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return True
    binds = (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.NamedExpr, ast.Import, ast.ImportFrom,
             ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Global, ast.Nonlocal)
    return not any(isinstance(node, binds) for node in ast.walk(tree))


def _library_source(cell, index: int) -> bool:
    """Whether ``cell`` belongs to the instructor copy only: tagged SOURCE_TAG, or a code cell that would
    print an exercise's reference solution (which must then do nothing else)."""
    if SOURCE_TAG in cell.get("metadata", {}).get("tags", []):
        return True
    if cell.get("cell_type") != "code":
        return False
    shown = shown_references(cell.get("source", ""))
    if shown and not _only_displays(cell.source):
        names = ", ".join(f"`{qualname}`" for qualname in (REFERENCES[e][1] for e in shown))
        raise ValueError(f"cell {index} prints the library's {names} (the solution of an exercise) and also "
                         "runs other code; put the display in a cell of its own, after the exercise, so that "
                         "student copies can leave it out.")
    return bool(shown)


def list_exercises(nb) -> list[tuple[int, str]]:
    """(cell index, title) of every code cell with a solution region."""
    return [(index, exercise_title(nb.cells, index)) for index, cell in enumerate(nb.cells) if _has_solution(cell)]


def make_student_notebook(nb, keep_solutions: bool = False):
    """A student copy of ``nb`` (which is not changed): solutions replaced by
    ``raise NotImplementedError(<title>)``, hidden tests removed, outputs and execution counts cleared.
    Cell metadata (nbgrader's included) is kept as it is.

    Cells of the instructor copy only are left out, each run of them replaced by one markdown note
    (LIBRARY_NOTE): cells tagged ``library-source``, and every code cell that would print the library's
    solution of an exercise (``shown_references``) — tagged or not. Such a cell must only print, so that
    leaving it out cannot break a later cell; one that also computes raises ValueError.

    ``keep_solutions=True`` leaves out only those cells and keeps everything else (solutions, hidden tests,
    outputs): the source folder for ``nbgrader generate_assignment``, which knows nothing of the tag.
    """
    from nbformat.v4 import new_markdown_cell

    student = copy.deepcopy(nb)
    cells = []
    for index, cell in enumerate(student.cells):
        if _library_source(cell, index):
            if not (cells and cells[-1].cell_type == "markdown" and cells[-1].source == LIBRARY_NOTE):
                note = new_markdown_cell(LIBRARY_NOTE)   # one note for a run of left-out cells
                if "id" in cell:
                    note.id = cell.id                    # the first left-out cell's id: stable across copies
                else:
                    del note["id"]                       # a notebook from before cell ids (nbformat < 4.5)
                cells.append(note)
            continue
        if cell.cell_type == "code" and not keep_solutions:
            try:
                cell.source = strip_solutions(cell.source, exercise_title(nb.cells, index))
            except ValueError as error:
                raise ValueError(f"cell {index}: {error}") from None
            cell.outputs = []
            cell.execution_count = None
        cells.append(cell)
    student.cells = cells
    return student


def _write_atomically(nb, path: Path) -> None:
    import nbformat

    from .files import atomic_file

    with atomic_file(path) as file:
        nbformat.write(nb, file)


def _notebooks(src: Path) -> list[Path]:
    if not src.is_dir():
        raise SystemExit(f"error: {src} is not a folder of notebooks.")
    return sorted(src.glob("*.ipynb"))


def main(argv: list[str] | None = None) -> int:
    import nbformat

    parser = argparse.ArgumentParser(prog="python -m rlhf_core.exercises",
                                     description="Student copies of the course notebooks (nbgrader markers).")
    commands = parser.add_subparsers(dest="command", required=True)
    student = commands.add_parser("student", help="write student copies: solutions stripped, outputs cleared, "
                                                  "the library's code of exercised functions left out")
    student.add_argument("src", type=Path, help="folder of solution notebooks")
    student.add_argument("out", type=Path, help="folder for the student copies (not SRC)")
    student.add_argument("--keep-solutions", action="store_true",
                         help="only leave out the library's code: a source folder for nbgrader generate_assignment")
    listing = commands.add_parser("list", help="print the exercises found: notebook, cell index, title")
    listing.add_argument("src", type=Path)
    args = parser.parse_args(argv)

    paths = _notebooks(args.src)
    if args.command == "list":
        for path in paths:
            for index, title in list_exercises(nbformat.read(path, as_version=4)):
                print(f"{path.name}\tcell {index}\t{title}")
        return 0

    if args.out.resolve() == args.src.resolve():
        raise SystemExit("error: OUT must differ from SRC, or the solutions would be overwritten.")
    args.out.mkdir(parents=True, exist_ok=True)
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        try:
            student = make_student_notebook(nb, keep_solutions=args.keep_solutions)
        except ValueError as error:
            raise SystemExit(f"error: {path.name}: {error}") from None
        _write_atomically(student, args.out / path.name)
        left_out = len(nb.cells) - len(student.cells) + sum(c.source == LIBRARY_NOTE for c in student.cells)
        print(f"wrote {args.out / path.name} ({len(list_exercises(nb))} exercises)"
              + (f"; left out {left_out} cells of the library's solutions" if left_out else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
