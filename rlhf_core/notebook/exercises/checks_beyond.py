"""The checks of the methods beyond PPO, each against ``rlhf_core.losses``: DPO's loss (Rafailov et al. 2023, eq. 7)
and the advantages of the two critic-free policy gradients, RLOO's leave-one-out baseline (Ahmadian et al. 2024)
and GRPO's group normalisation (Shao et al. 2024). In ``returns`` (B,) the k answers to one prompt are
consecutive rows.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from ... import losses
from .probes import RTOL, _call, _call_on_originals, _close, _diff, _fail, _loss, _rounded, _tensor


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
