"""The checks of PPO's update, each against ``rlhf_core.losses``: the clipped policy loss (PPO eq. 7), the clipped
value loss, and the adaptive KL controller that sets β between updates (Ziegler et al. 2019).

Both losses first go through the masked-mean probes (``_masked_loss_probes``), then one-token cases that tell min
from max, ρ from log ρ and a clipped ratio from a clipped log-ratio, then ``_gradient_and_stats_probes``: the
loss must carry the reference's gradient, and a ``clipfrac`` it returns must be the reference's.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from ... import losses
from .probes import _call, _close, _fail, _loss, _masked_loss_probes, _tensor, random_batch


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
