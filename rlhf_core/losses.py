"""The math of RLHF: one short function per equation, plain torch.

Read each function next to its paper. Shapes use these letters:

    B  batch (prompts)             T  response tokens
    K  ranked completions          L  full sequence (prompt + response)
    V  vocabulary size

Masks are explicit everywhere: ``mask`` is True on real response tokens and False on padding.
Where a function needs "the last real token" (``rlhf_rewards``, ``compute_gae``) the True entries of
each row must form a prefix (responses start at position 0 and are padded after their end); the
function checks that. Masks may be bool or 0/1 integer/float tensors (an ``attention_mask``).

Padding never changes a result: every function first sets padded entries to 0 (``torch.where``),
so huge numbers left there reach neither a mean nor a gradient (their gradient is exactly 0).

Bad input raises ``ValueError`` naming the problem and the fix. The checks live in
``rlhf_core.validation`` so that the functions themselves read like the equations.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .validation import (as_bool_mask, as_prefix_mask, check_clip_range, check_no_nan, check_shape, grouped,
                         masked_inputs, rows)

__all__ = [
    "masked_mean",
    "masked_var",
    "whiten",
    "sft_loss",
    "ranking_loss",
    "rlhf_rewards",
    "kl_per_token",
    "compute_gae",
    "ppo_policy_loss",
    "value_loss",
    "AdaptiveKLController",
    "FixedKLController",
    "dpo_loss",
    "rloo_advantages",
    "grpo_advantages",
    "entropy",
]

KL_ESTIMATORS = ("k1", "k2", "k3")


# --------------------------------------------------------------------------------------------------
# Masked statistics
# --------------------------------------------------------------------------------------------------

def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of ``x`` over the entries where ``mask`` is True (padding never enters).

    ``x`` and ``mask`` have the same shape. ``dim=None`` averages over everything and returns a
    scalar; ``dim=d`` averages along that dimension. An empty selection raises ValueError (the mean
    of nothing is undefined; silently returning 0 or NaN would hide a bug).

    >>> masked_mean(torch.tensor([[1., 2., 99.]]), torch.tensor([[True, True, False]]))
    tensor(1.5000)
    """
    mask = as_bool_mask(mask, x.shape)
    count = mask.sum() if dim is None else mask.sum(dim)
    if (count == 0).any():
        raise ValueError(f"masked_mean: the mask selects no entries (along dim={dim}); "
                         "pass a mask with at least one True entry per mean.")
    total = torch.where(mask, x, 0.0).sum() if dim is None else torch.where(mask, x, 0.0).sum(dim)
    return total / count


def masked_var(x: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Variance of ``x`` over the entries where ``mask`` is True (a scalar).

    ``unbiased=True`` (the default, as in TRL) divides by N − 1 and needs N ≥ 2 valid entries.
    """
    mask = as_bool_mask(mask, x.shape)
    n = int(mask.sum())
    if n < 1 + int(unbiased):
        raise ValueError(f"masked_var: {n} valid entries; the {'unbiased ' if unbiased else ''}"
                         f"variance needs at least {1 + int(unbiased)}.")
    centered = torch.where(mask, x - masked_mean(x, mask), 0.0)
    var = (centered**2).sum() / n                       # biased: divide by N
    return var * n / (n - 1) if unbiased else var        # Bessel's correction: divide by N - 1


def whiten(x: torch.Tensor, mask: torch.Tensor | None = None, shift_mean: bool = True) -> torch.Tensor:
    """Standardise ``x`` to mean 0 and variance 1 over its valid entries (Huang et al., "whiten
    advantages"); padding positions of the output are 0.

    Statistics use only the valid entries and the *unbiased* masked variance (N − 1), as TRL does,
    with eps = 1e-8 inside the square root. ``shift_mean=False`` rescales without centring: the mean
    is added back (used for rewards, whose sign carries meaning).
    """
    mask = torch.ones_like(x, dtype=torch.bool) if mask is None else as_bool_mask(mask, x.shape)
    (x,) = masked_inputs(mask, x=x)
    mean = masked_mean(x, mask)                          # ()
    var = masked_var(x, mask, unbiased=True)             # ()
    whitened = (x - mean) * torch.rsqrt(var + 1e-8)      # (...)
    if not shift_mean:
        whitened = whitened + mean
    return torch.where(mask, whitened, 0.0)


# --------------------------------------------------------------------------------------------------
# Stage 1 and 2: supervised fine-tuning and the reward model
# --------------------------------------------------------------------------------------------------

def sft_loss(logits: torch.Tensor, input_ids: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy on the demonstration's tokens only (InstructGPT §3.5, "SFT").

    ======================  =========  ==============================================
    ``logits``              (B, L, V)  model outputs; ``logits[:, t]`` predicts token t+1
    ``input_ids``           (B, L)     prompt + demonstration (+ padding)
    ``response_mask``       (B, L)     True on demonstration tokens (the targets)
    returns                 ()         mean −log p(y_t | y_<t) over all target tokens
    ======================  =========  ==============================================

    The mean is over every target token of the batch (long demonstrations weigh more, as in
    ordinary language-model training). Position 0 has no preceding logit, so it cannot be a target:
    ``response_mask[:, 0]`` True raises ValueError rather than being silently dropped.
    """
    if logits.dim() != 3:
        raise ValueError(f"sft_loss: logits must be (B, L, V), got shape {tuple(logits.shape)}.")
    check_shape("input_ids", input_ids, logits.shape[:2], "logits.shape[:2]")
    response_mask = as_bool_mask(response_mask, input_ids.shape, "response_mask")
    if response_mask[:, 0].any():
        raise ValueError("sft_loss: response_mask[:, 0] is True, but token 0 has no preceding logit "
                         "to predict it; a response must follow at least one prompt token.")
    targets = response_mask[:, 1:]                       # (B, L-1): token t+1 is a target
    predicted_logits = logits[:, :-1][targets]           # (N, V), N = number of target tokens
    target_ids = input_ids[:, 1:][targets]               # (N,)
    if predicted_logits.shape[0] == 0:
        raise ValueError("sft_loss: response_mask selects no tokens; mark the demonstration tokens.")
    check_no_nan("logits", predicted_logits)
    return F.cross_entropy(predicted_logits, target_ids)   # mean over the N targets


def ranking_loss(rewards: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Pairwise ranking loss of the reward model (InstructGPT §3.5, eq. 1).

        loss(θ) = −1/C(K,2) · E_(x, y_w, y_l) [ log σ(r_θ(x, y_w) − r_θ(x, y_l)) ]

    ===========  ======  ===========================================================
    ``rewards``  (B, K)  r_θ(x, y_k); columns in the labeler's order, best first
    ``mask``     (B, K)  True on the K_i real completions of prompt i (K_i ≥ 2)
    returns      ()      mean over prompts of the mean over that prompt's C(K_i, 2) pairs
    ===========  ======  ===========================================================

    All pairs of one prompt form one batch element (the paper's fix for overfitting), so each
    prompt weighs the same whatever its K_i. Any column j after column i among the valid ones is
    worse than i; the valid columns need not be contiguous. ``F.logsigmoid`` keeps margins of
    ±100 finite in float32.
    """
    if rewards.dim() != 2 or rewards.shape[1] < 2:
        raise ValueError(f"ranking_loss: rewards must be (B, K) with K >= 2 ranked completions, "
                         f"got shape {tuple(rewards.shape)}.")
    mask = torch.ones_like(rewards, dtype=torch.bool) if mask is None else as_bool_mask(mask, rewards.shape)
    n_valid = mask.sum(1)                                                        # (B,)
    if (n_valid < 2).any():
        raise ValueError(f"ranking_loss: rows {rows(n_valid < 2)} have fewer than two valid "
                         "completions; drop those prompts (a ranking needs at least a pair).")
    (rewards,) = masked_inputs(mask, rewards=rewards)
    K = rewards.shape[1]
    margin = rewards[:, :, None] - rewards[:, None, :]                           # (B, K, K): r_i - r_j
    better_first = torch.ones(K, K, dtype=torch.bool, device=rewards.device).triu(1)  # (K, K): i < j
    is_pair = better_first & mask[:, :, None] & mask[:, None, :]                 # (B, K, K)
    pair_loss = torch.where(is_pair, -F.logsigmoid(margin), 0.0)                 # (B, K, K)
    n_pairs = n_valid * (n_valid - 1) / 2                                        # (B,): C(K_i, 2)
    return (pair_loss.sum((1, 2)) / n_pairs).mean()


# --------------------------------------------------------------------------------------------------
# Stage 3: the RL reward, KL estimators, GAE, PPO
# --------------------------------------------------------------------------------------------------

def rlhf_rewards(scores: torch.Tensor, logprobs: torch.Tensor, ref_logprobs: torch.Tensor,
                 mask: torch.Tensor, kl_coef: float) -> torch.Tensor:
    """Per-token reward of the RL stage (InstructGPT eq. 2; Ziegler et al. 2019).

        R_t = −β · (log π_RL(y_t | ·) − log π_SFT(y_t | ·))  +  [t = last token] · r_θ(x, y)

    ================  ======  =====================================================
    ``scores``        (B,)    r_θ(x, y), the reward model's score of each response
    ``logprobs``      (B, T)  log π_RL of each sampled token
    ``ref_logprobs``  (B, T)  log π_SFT (the frozen reference) of the same tokens
    ``mask``          (B, T)  True on response tokens; each row a non-empty prefix
    ``kl_coef``       float   β ≥ 0
    returns           (B, T)  R_t; 0 on padding
    ================  ======  =====================================================
    """
    if kl_coef < 0:
        raise ValueError(f"rlhf_rewards: kl_coef = {kl_coef} < 0 would reward drifting from the "
                         "reference model; pass kl_coef >= 0.")
    mask = as_prefix_mask(mask, logprobs.shape, need_one=True)
    check_shape("scores", scores, mask.shape[:1], "(B,)")
    check_no_nan("scores", scores)
    logprobs, ref_logprobs = masked_inputs(mask, logprobs=logprobs, ref_logprobs=ref_logprobs)
    next_is_padding = ~torch.cat([mask[:, 1:], torch.zeros_like(mask[:, :1])], dim=1)  # (B, T)
    is_last = mask & next_is_padding                                 # (B, T): one True per row
    kl_penalty = -kl_coef * (logprobs - ref_logprobs)                # (B, T)
    score_at_end = torch.where(is_last, scores[:, None], 0.0)        # (B, T)
    return torch.where(mask, kl_penalty + score_at_end, 0.0)


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """H = −Σ_v π(v) log π(v) at each position: logits (..., V) → (...). PPO logs its mean over response tokens
    (``policy/entropy``); it falls as the policy sharpens."""
    logp = logits.log_softmax(-1)
    return -(logp.exp() * logp).sum(-1)


def kl_per_token(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, estimator: str = "k1") -> torch.Tensor:
    """Per-token estimates of KL(π ‖ π_ref) from tokens sampled from π (J. Schulman,
    "Approximating KL divergence", 2020). Elementwise; mask the result yourself.

    With log r = log π_ref(y) − log π(y) (the log-ratio, same shape as the inputs):

    ====  ====================  ==================================================
    k1    −log r                unbiased, high variance, can be negative per token
    k2    ½ (log r)²            biased, low variance, ≥ 0
    k3    (r − 1) − log r       unbiased, low variance, ≥ 0
    ====  ====================  ==================================================

    k3 is e^d − 1 − d with d = log r. Written naively it cancels catastrophically near d = 0 (in
    float32 at |d| = 1e-8 it is pure rounding noise), so it is ``expm1(d) − d`` for |d| ≥ 0.5 and
    the Taylor series d²/2 + d³/6 + … + d¹⁶/16! for |d| < 0.5: within a few ulp of the exact value
    everywhere, and never negative.
    """
    if estimator not in KL_ESTIMATORS:
        raise ValueError(f"kl_per_token: unknown estimator {estimator!r}; use one of {KL_ESTIMATORS}.")
    check_shape("ref_logprobs", ref_logprobs, logprobs.shape, "logprobs.shape")
    log_ratio = ref_logprobs - logprobs                  # (...): log r = log π_ref/π
    if estimator == "k1":
        return -log_ratio
    if estimator == "k2":
        return 0.5 * log_ratio**2
    return _expm1_minus_identity(log_ratio)              # k3 = (r - 1) - log r


def compute_gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor,
                gamma: float = 1.0, lam: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016; as written in PPO, Schulman et al.
    2017, eqs. 11–12).

        δ_t = r_t + γ·V_{t+1} − V_t
        A_t = δ_t + γλ·A_{t+1}

    ===========  ======  ==========================================================
    ``rewards``  (B, T)  r_t, e.g. from ``rlhf_rewards``
    ``values``   (B, T)  V_t, the value head's estimate at each response token
    ``mask``     (B, T)  True on response tokens; each row a prefix
    ``gamma``    float   γ, discount (InstructGPT and Ziegler et al. use 1)
    ``lam``      float   λ, bias/variance trade-off (0: one-step TD, 1: Monte Carlo)
    returns      (B, T)  advantages A_t, and returns A_t + V_t (the value target); 0 on padding
    ===========  ======  ==========================================================

    The episode ends after each row's last real token: there V_{t+1} = 0 and A_{t+1} = 0. Both
    outputs are targets, not functions of the parameters: they are computed under ``torch.no_grad``
    and carry no graph.
    """
    if not (0.0 <= gamma <= 1.0 and 0.0 <= lam <= 1.0):
        raise ValueError(f"compute_gae: need 0 <= gamma <= 1 and 0 <= lam <= 1, got gamma={gamma}, lam={lam}.")
    mask = as_prefix_mask(mask, rewards.shape)
    with torch.no_grad():
        rewards, values = masked_inputs(mask, rewards=rewards, values=values)  # padding -> 0
        advantages = torch.zeros_like(values)                                   # (B, T)
        next_value = torch.zeros_like(values[:, 0])                             # (B,): V_{t+1}
        next_advantage = torch.zeros_like(values[:, 0])                         # (B,): A_{t+1}
        for t in reversed(range(values.shape[1])):
            # Past a row's end everything is 0, so at its last token V_{t+1} = A_{t+1} = 0.
            delta = rewards[:, t] + gamma * next_value - values[:, t]           # (B,)
            next_advantage = delta + gamma * lam * next_advantage               # (B,)
            next_value = values[:, t]
            advantages[:, t] = next_advantage
        advantages = torch.where(mask, advantages, 0.0)
        returns = torch.where(mask, advantages + values, 0.0)
    return advantages, returns


def ppo_policy_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
                    mask: torch.Tensor, clip_range: float = 0.2) -> tuple[torch.Tensor, dict[str, float]]:
    """PPO's clipped surrogate, as a loss to minimise (Schulman et al. 2017, eq. 7).

        ρ_t  = π_θ(y_t | ·) / π_θ_old(y_t | ·)
        loss = mean_t max(−A_t·ρ_t, −A_t·clip(ρ_t, 1 − ε, 1 + ε))

    ================  ======  ================================================
    ``logprobs``      (B, T)  log π_θ, with grad
    ``old_logprobs``  (B, T)  log π_θ_old, from the rollout (no grad)
    ``advantages``    (B, T)  A_t, usually whitened GAE
    ``mask``          (B, T)  True on response tokens
    ``clip_range``    float   ε > 0
    returns                   loss (), and stats (python floats)
    ================  ======  ================================================

    The mean is over all valid tokens of the batch. Where the clipped term is the larger one
    the token's gradient is exactly 0: it has moved far enough this epoch.

    stats: ``clipfrac`` — fraction of valid tokens whose clipped term is strictly larger (active);
    ``approx_kl`` — mean of ½(log π_θ − log π_θ_old)², the k2 estimate of KL(π_θ_old ‖ π_θ);
    ``ratio_mean`` — mean of ρ_t (1 at the first epoch of a batch).
    """
    check_clip_range(clip_range)
    mask = as_bool_mask(mask, logprobs.shape)
    logprobs, old_logprobs, advantages = masked_inputs(
        mask, logprobs=logprobs, old_logprobs=old_logprobs, advantages=advantages)
    log_ratio = logprobs - old_logprobs                                          # (B, T)
    ratio = torch.exp(log_ratio)                                                 # (B, T): ρ_t
    unclipped = -advantages * ratio                                              # (B, T)
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range)  # (B, T)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)                  # ()
    stats = {
        "clipfrac": masked_mean((clipped > unclipped).to(ratio.dtype), mask).item(),
        "approx_kl": masked_mean(0.5 * log_ratio.detach() ** 2, mask).item(),
        "ratio_mean": masked_mean(ratio.detach(), mask).item(),
    }
    return loss, stats


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor,
               mask: torch.Tensor, clip_range: float = 0.2) -> tuple[torch.Tensor, dict[str, float]]:
    """Clipped value loss (OpenAI baselines / Ziegler et al. 2019; not in the PPO paper).

        V_clip = V_old + clip(V − V_old, −ε, ε)
        loss   = ½ · mean_t max((V − R)², (V_clip − R)²)

    ==============  ======  ==================================================
    ``values``      (B, T)  V, the value head now, with grad
    ``old_values``  (B, T)  V_old, from the rollout
    ``returns``     (B, T)  R, the target (``compute_gae``'s returns)
    ``mask``        (B, T)  True on response tokens
    ``clip_range``  float   ε > 0, in the units of the reward
    returns                 loss (), and stats (python floats)
    ==============  ======  ==================================================

    stats: ``clipfrac`` — fraction of valid tokens where the clipped term is strictly larger
    (those tokens get no gradient); ``mean_value`` — mean of V; ``mean_return`` — mean of R.
    """
    check_clip_range(clip_range)
    mask = as_bool_mask(mask, values.shape)
    values, old_values, returns = masked_inputs(
        mask, values=values, old_values=old_values, returns=returns)
    values_clipped = old_values + torch.clamp(values - old_values, -clip_range, clip_range)  # (B, T)
    loss_unclipped = (values - returns) ** 2                                     # (B, T)
    loss_clipped = (values_clipped - returns) ** 2                               # (B, T)
    loss = 0.5 * masked_mean(torch.maximum(loss_unclipped, loss_clipped), mask)  # ()
    stats = {
        "clipfrac": masked_mean((loss_clipped > loss_unclipped).to(values.dtype), mask).item(),
        "mean_value": masked_mean(values.detach(), mask).item(),
        "mean_return": masked_mean(returns.detach(), mask).item(),
    }
    return loss, stats


# --------------------------------------------------------------------------------------------------
# The KL coefficient β
# --------------------------------------------------------------------------------------------------

class AdaptiveKLController:
    """Adaptive KL coefficient (Ziegler et al. 2019):

        e = clip(KL / KL_target − 1, −0.2, 0.2)
        β ← β · (1 + e · n_steps / horizon)

    β rises while the policy's KL is above the target and falls below it, by at most a factor
    1 ± 0.2·n_steps/horizon per update. Ziegler et al. use target 6 nats, horizon 10 000, β₀ 0.15.

    ``value`` is the current β. ``update(current_kl, n_steps)`` applies one step, where n_steps is
    the number of episodes (samples) since the last update, and returns the new β.
    """

    def __init__(self, init_kl_coef: float, target: float, horizon: float):
        if init_kl_coef < 0:
            raise ValueError(f"AdaptiveKLController: init_kl_coef = {init_kl_coef} < 0; pass β₀ >= 0.")
        if target <= 0:
            raise ValueError(f"AdaptiveKLController: target = {target}; the target KL must be > 0 nats.")
        if horizon <= 0:
            raise ValueError(f"AdaptiveKLController: horizon = {horizon}; pass a positive number of episodes.")
        self.value = float(init_kl_coef)
        self.target = float(target)
        self.horizon = float(horizon)

    def update(self, current_kl: float, n_steps: int) -> float:
        current_kl = float(current_kl)
        if math.isnan(current_kl) or n_steps < 0:
            raise ValueError(f"AdaptiveKLController.update: got current_kl={current_kl}, "
                             f"n_steps={n_steps}; need a number and n_steps >= 0.")
        proportional_error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)   # e
        self.value *= 1.0 + proportional_error * n_steps / self.horizon
        return self.value


class FixedKLController:
    """A constant β with the same interface as ``AdaptiveKLController`` (``update`` does nothing)."""

    def __init__(self, kl_coef: float):
        if kl_coef < 0:
            raise ValueError(f"FixedKLController: kl_coef = {kl_coef} < 0; pass β >= 0.")
        self.value = float(kl_coef)

    def update(self, current_kl: float, n_steps: int) -> float:
        return self.value


# --------------------------------------------------------------------------------------------------
# DPO
# --------------------------------------------------------------------------------------------------

def dpo_loss(policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor,
             ref_chosen_logps: torch.Tensor, ref_rejected_logps: torch.Tensor,
             beta: float = 0.1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Direct preference optimisation (Rafailov et al. 2023, eq. 7).

        loss = −log σ( β·log π(y_w)/π_ref(y_w) − β·log π(y_l)/π_ref(y_l) )

    ===========================  ====  ========================================
    ``policy_chosen_logps``      (B,)  log π(y_w | x), summed over the response
    ``policy_rejected_logps``    (B,)  log π(y_l | x)
    ``ref_chosen_logps``         (B,)  log π_ref(y_w | x)
    ``ref_rejected_logps``       (B,)  log π_ref(y_l | x)
    ``beta``                     float β > 0 (the paper uses 0.1)
    returns                            loss () (mean over the batch), and the implicit rewards
                                       β·log π(y)/π_ref(y) of chosen and rejected, (B,), detached
    ===========================  ====  ========================================
    """
    if beta <= 0:
        raise ValueError(f"dpo_loss: beta = {beta}; pass beta > 0 (the paper uses 0.1).")
    named = dict(policy_chosen_logps=policy_chosen_logps, policy_rejected_logps=policy_rejected_logps,
                 ref_chosen_logps=ref_chosen_logps, ref_rejected_logps=ref_rejected_logps)
    for name, tensor in named.items():
        check_shape(name, tensor, policy_chosen_logps.shape, "policy_chosen_logps.shape")
        check_no_nan(name, tensor)
    chosen_log_ratio = policy_chosen_logps - ref_chosen_logps            # (B,)
    rejected_log_ratio = policy_rejected_logps - ref_rejected_logps      # (B,)
    loss = -F.logsigmoid(beta * (chosen_log_ratio - rejected_log_ratio)).mean()  # ()
    chosen_rewards = beta * chosen_log_ratio.detach()                    # (B,)
    rejected_rewards = beta * rejected_log_ratio.detach()                # (B,)
    return loss, chosen_rewards, rejected_rewards


def rloo_advantages(returns: torch.Tensor, k: int) -> torch.Tensor:
    """REINFORCE leave-one-out advantages (Kool et al. 2019; RLOO, Ahmadian et al. 2024, eq. 5).

        A_i = R_i − 1/(k−1) · Σ_{j ≠ i} R_j        over the k answers to the same prompt

    ===========  ======  ==========================================================================
    ``returns``  (B,)    each answer's return R_i (its score minus its KL penalty); B = prompts · k,
                         the k answers of a prompt in consecutive rows
    ``k``        int     answers per prompt, k ≥ 2
    returns      (B,)    A_i: the return minus the mean return of the *other* k − 1 answers
    ===========  ======  ==========================================================================

    The baseline leaves the answer itself out, so it does not depend on that answer's own sample and the
    gradient stays unbiased. It replaces the critic: a prompt's other answers say how good a typical answer
    to *this* prompt is, which is what V(x) was trained to say. Equal returns give advantages of 0.
    """
    returns = grouped(returns, k, "rloo_advantages")                          # (B/k, k)
    baseline = (returns.sum(1, keepdim=True) - returns) / (k - 1)              # (B/k, k): mean of the others
    return (returns - baseline).flatten()                                       # (B,)


def grpo_advantages(returns: torch.Tensor, k: int, eps: float = 1e-4) -> torch.Tensor:
    """Group-normalised advantages (GRPO, Shao et al. 2024, §4.1.2).

        A_i = (R_i − mean(R_group)) / (std(R_group) + eps)          over the k answers to the same prompt

    ===========  ======  ==========================================================================
    ``returns``  (B,)    each answer's return; B = prompts · k, a prompt's k answers in consecutive rows
    ``k``        int     answers per prompt (the group), k ≥ 2
    ``eps``      float   keeps a group of equal returns at advantage 0 instead of 0/0
    returns      (B,)    A_i, standardised within each group (std with k − 1, as torch.std)
    ===========  ======  ==========================================================================

    Every prompt's answers are centred and scaled on their own, so an easy prompt (all answers good) and a
    hard one (all bad) push equally hard; only the ranking of answers *within* a prompt matters.
    """
    returns = grouped(returns, k, "grpo_advantages")                          # (B/k, k)
    mean = returns.mean(1, keepdim=True)                                        # (B/k, 1)
    std = returns.std(1, keepdim=True)                                          # (B/k, 1), unbiased
    return ((returns - mean) / (std + eps)).flatten()                           # (B,)


# --------------------------------------------------------------------------------------------------
# Private helper: numerics
# --------------------------------------------------------------------------------------------------

def _expm1_minus_identity(d: torch.Tensor) -> torch.Tensor:
    """e^d − 1 − d, accurate to a few ulp for every d, float32 and float64 (see ``kl_per_token``)."""
    # |d| < 0.5: d² · Σ_{n=2..16} d^(n-2)/n!  (Horner); the terms left out are < 1e-18 relative.
    series = torch.full_like(d, 1 / math.factorial(16))
    for n in range(15, 1, -1):
        series = 1 / math.factorial(n) + d * series
    taylor = d * d * series
    # |d| >= 0.5: the result is >= 0.1, so subtracting d loses at most a few ulp.
    return torch.where(d.abs() < 0.5, taylor, torch.expm1(d) - d)
