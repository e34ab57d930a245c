"""The checks of the evaluation exercises, each against ``rlhf_core.evaluate``: the win rate of A over B from paired
scores, with its 95 % interval (``win_rate``), and how far best-of-n moves a policy, KL(best-of-n ‖ π) =
log n − (n − 1)/n nats (``best_of_n_kl``), checked against the KL counted out for a policy with 100 000 equally
likely answers.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from ...evaluate import win_rate as reference_win_rate
from .probes import _call, _close, _fail


# --------------------------------------------------------------------------------------------------
# A win rate and its interval
# --------------------------------------------------------------------------------------------------

def check_win_rate(win_rate: Callable) -> None:
    """Check a function like ``evaluate.win_rate``: ``win_rate(scores_a, scores_b, z=1.96)`` returning
    ``(rate, low, high)`` (or an object with ``.rate``, ``.low``, ``.high``) — A's win rate over B from
    paired scores, ties counted half, and the normal-approximation interval clipped to [0, 1]."""
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
        w = reference_win_rate(list(a), list(b), z)
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
