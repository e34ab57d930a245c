"""Direct preference optimisation: the policy learns from the rankings themselves, with no reward model and no RL.

DPO (Rafailov et al. 2023) starts from the KL-regularised objective PPO climbs, max E[r(x, y)] − β·KL(π ‖ π_ref),
whose optimum is π*(y|x) ∝ π_ref(y|x)·exp(r(x, y)/β). Turned around, a policy *defines* a reward,
r(x, y) = β·log π(y|x)/π_ref(y|x) (+ a term of x alone, which cancels in a comparison), and the reward model's
ranking loss on that reward is a loss on the policy (eq. 7, `losses.dpo_loss`):

    loss = −log σ( β·log π(y_w)/π_ref(y_w) − β·log π(y_l)/π_ref(y_l) )

So DPO trains on the same rankings as the reward model (notebook 03): each ranking of K answers gives its C(K, 2)
(better, worse) pairs, here all in one step as the reward model's were; π_ref is the frozen SFT model, as in PPO.
The log-probabilities are summed over each answer's tokens, its EOS included. Notebook 07 puts DPO beside PPO.

The settings were chosen on the dev split (seed 0; README, "Beyond PPO"). As in PPO, the final layer norm learns at a
rate of its own (`ppo.final_norm_groups`): the rankings prefer the SFT model's sharper answers, and that global change
is what a tiny model learns first. Without it (lr 1e-5 or 3e-5, one pass) DPO stayed within 0.5 of SFT's gold; with
lr 1e-4 it moved 8 nats from SFT for nothing.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from ..common.timing import Stopwatch
from ..losses import dpo_loss
from ..models.rankings import shared_prompt_logprobs
from ..models.sequences import tokenize_prompts, tokenize_responses
from .ppo import final_norm_groups
from .reward import pairwise_accuracy
from .training import gradient_step, record_step


@dataclass
class DPOConfig:
    beta: float = 0.1           # β of eq. 7: the KL penalty's strength, as in PPO (the paper: 0.1)
    lr: float = 1e-5            # Adam's learning rate, constant after a short warm-up (the paper: 1e-6)
    warmup_steps: int = 10      # the learning rate rises linearly over the first steps (the paper: 150)
    final_norm_lr: float | None = 6e-2  # the final layer norm's own rate, as PPO's (ppo.final_norm_groups); None: lr
    epochs: int = 1             # passes over the training rankings (dev: a second at 3e-2 was as good, at twice the time)
    batch_size: int = 8         # rankings per step, each with all its C(K, 2) pairs of different answers
    seed: int = 0

    def __post_init__(self):
        if self.beta <= 0:
            raise ValueError(f"DPOConfig.beta = {self.beta}; use beta > 0 (the paper: 0.1)")
        if self.lr <= 0 or self.epochs < 1 or self.batch_size < 1 or self.warmup_steps < 0:
            raise ValueError(f"DPOConfig: lr = {self.lr}, epochs = {self.epochs}, batch_size = {self.batch_size}, "
                             f"warmup_steps = {self.warmup_steps}; use lr > 0, epochs >= 1, batch_size >= 1, "
                             "warmup_steps >= 0")


def answer_logprobs(model, tokenizer, comparisons: list[dict]) -> torch.Tensor:
    """log π(y | x) of every ranked answer, summed over its tokens (EOS included): (B, K), columns best first.

    Each prompt is read once for its K answers (`shared_prompt_logprobs`, the reward model's layout): about half of
    a ranking's tokens are prompt. Keeps the autograd graph; wrap in torch.no_grad() for the frozen reference."""
    k = len(comparisons[0]["responses"])
    if any(len(c["responses"]) != k for c in comparisons):
        raise ValueError("the rankings of one batch must all rank the same number of answers (K)")
    query_ids, query_mask = tokenize_prompts(tokenizer, [c["prompt"] for c in comparisons])
    response_ids, response_mask = tokenize_responses(tokenizer, [r for c in comparisons for r in c["responses"]])
    logprobs = shared_prompt_logprobs(model, query_ids, query_mask, response_ids, response_mask)  # (B·K, T)
    return logprobs.sum(1).view(len(comparisons), k)                                             # (B, K)


def distinct_pairs(comparisons: list[dict]) -> torch.Tensor:
    """(B, K, K) bool: True at (i, j), i < j, where answer i was ranked above answer j and their texts differ
    (a pair of identical texts teaches nothing: its two log-ratios are equal)."""
    k = len(comparisons[0]["responses"])
    upper = torch.ones(k, k, dtype=torch.bool).triu(1)
    return torch.stack([upper & torch.tensor([[a != b for b in c["responses"]] for a in c["responses"]])
                        for c in comparisons])


def ranking_dpo_loss(policy_logps: torch.Tensor, ref_logps: torch.Tensor, pairs: torch.Tensor,
                     beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """DPO over every counted pair of a batch of rankings: (loss (), implicit rewards β·log π/π_ref (B, K)).

    policy_logps, ref_logps (B, K) answers' summed log-probs, best first; pairs (B, K, K) from `distinct_pairs`.
    Each pair (i above j) is one (chosen, rejected) example of `losses.dpo_loss`; the loss is their mean."""
    b, i, j = pairs.nonzero(as_tuple=True)                                            # (N,) each
    loss, _, _ = dpo_loss(policy_logps[b, i], policy_logps[b, j], ref_logps[b, i], ref_logps[b, j], beta)
    return loss, beta * (policy_logps - ref_logps).detach()


@torch.no_grad()
def ranking_logprobs(model, tokenizer, comparisons: list[dict], batch_size: int = 32) -> torch.Tensor:
    """`answer_logprobs` of every ranking, (N, K), in batches and without gradients. `train_dpo` reads the frozen
    reference this way once and reuses it at every step (and notebook 07 for both β; TRL's `precompute_ref_log_probs`),
    rather than computing it again each time."""
    return torch.cat([answer_logprobs(model, tokenizer, comparisons[start:start + batch_size])
                      for start in range(0, len(comparisons), batch_size)])


def implicit_rewards(policy, ref_model, tokenizer, comparisons: list[dict], beta: float = 0.1,
                     ref_logps: torch.Tensor | None = None) -> torch.Tensor:
    """DPO's implicit reward β·log π(y)/π_ref(y) of every ranked answer: (N, K), columns in the labeler's order.
    `ref_logps`: `ranking_logprobs(ref_model, ...)` of these comparisons, if already computed."""
    if ref_logps is None:
        ref_logps = ranking_logprobs(ref_model, tokenizer, comparisons)
    return beta * (ranking_logprobs(policy, tokenizer, comparisons) - ref_logps)


def implicit_reward_accuracy(policy, ref_model, tokenizer, comparisons: list[dict], beta: float = 0.1,
                             rewards: torch.Tensor | None = None) -> float:
    """How often DPO's implicit reward orders a pair of different answers as the labeler did: the reward model's
    held-out accuracy (`reward.evaluate_reward_model`), for the policy as a reward model. `rewards`: the
    `implicit_rewards` of these comparisons, if already computed."""
    if rewards is None:
        rewards = implicit_rewards(policy, ref_model, tokenizer, comparisons, beta)             # (N, K)
    return pairwise_accuracy(rewards, distinct_pairs(comparisons))


def train_dpo(policy, ref_model, tokenizer, comparisons: list[dict], config: DPOConfig = DPOConfig(),
              callback=None, progress: bool = True, ref_logps: torch.Tensor | None = None) -> dict:
    """Train `policy` (a copy of the SFT model) with DPO on the rankings, against the frozen `ref_model`, whose
    log-probs of every answer are read once before training (or given: `ref_logps`, from `ranking_logprobs`).

    Returns the log {"step", "dpo/loss", "dpo/accuracy" (pairs whose implicit rewards are in the labeler's order),
    "dpo/margin" (mean implicit-reward gap, better minus worse), "seconds"}; callback(step, metrics) after each step.
    """
    from tqdm.auto import tqdm

    ref_model.eval().requires_grad_(False)
    if ref_logps is None:
        ref_logps = ranking_logprobs(ref_model, tokenizer, comparisons)                  # (N, K)
    if tuple(ref_logps.shape) != (len(comparisons), len(comparisons[0]["responses"])):
        raise ValueError(f"ref_logps has shape {tuple(ref_logps.shape)}; it must be ranking_logprobs of these "
                         f"{len(comparisons)} comparisons, (N, K)")
    policy.requires_grad_(True)
    policy.eval()  # dropout off, as in PPO: log π must mean the same at every step
    generator = torch.Generator().manual_seed(config.seed)
    groups = (final_norm_groups(policy, config) if config.final_norm_lr is not None
              else [{"params": list(policy.parameters()), "lr": config.lr}])
    optimizer = torch.optim.Adam(groups)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / (config.warmup_steps + 1)))
    steps_per_epoch = -(-len(comparisons) // config.batch_size)
    log = {"config": asdict(config), "step": [], "dpo/loss": [], "dpo/accuracy": [], "dpo/margin": []}
    stopwatch, step = Stopwatch(), 0
    with tqdm(total=config.epochs * steps_per_epoch, desc="DPO", disable=not progress) as bar:
        for _ in range(config.epochs):
            order = torch.randperm(len(comparisons), generator=generator).tolist()
            for first in range(0, len(order), config.batch_size):
                index = order[first:first + config.batch_size]
                batch = [comparisons[i] for i in index]
                pairs = distinct_pairs(batch)                                       # (B, K, K)
                if not pairs.any():
                    continue  # every answer of these rankings the same text: nothing to learn
                loss, rewards = ranking_dpo_loss(answer_logprobs(policy, tokenizer, batch), ref_logps[index], pairs,
                                                 config.beta)
                gradient_step(loss, policy, optimizer, f"DPO, step {step}", f"lower DPOConfig.lr (now {config.lr})")
                schedule.step()
                b, i, j = pairs.nonzero(as_tuple=True)
                gap = rewards[b, i] - rewards[b, j]                                 # (N,) better minus worse
                metrics = {"dpo/loss": loss.item(), "dpo/accuracy": (gap > 0).float().mean().item(),
                           "dpo/margin": gap.mean().item()}
                record_step(log, step, metrics, callback, bar)  # the loss first: the bar shows it
                step += 1
    log["seconds"] = stopwatch.seconds(1)
    return log
