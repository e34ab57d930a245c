"""The checks of the RL stage's building blocks, each against ``rlhf_core.losses``: the per-token reward with its
KL penalty (InstructGPT eq. 2), the KL estimators k1, k2, k3, generalised advantage estimation, and whitening.

Each check starts from hand-made cases that isolate one mistake (the score on the last column instead of the last
valid token, δ_t with V_t where V_{t+1} belongs, γ and λ swapped, statistics per row, the biased variance ...)
and ends with random ragged batches whose padding holds large numbers.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from ... import losses
from .probes import ATOL, RTOL, _call, _close, _diff, _fail, _rounded, _tensor, random_batch


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
