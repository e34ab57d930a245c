"""Measuring models with the simulated labeler: gold scores, failure rates and win rates with intervals.

InstructGPT §4 reports how often labelers prefer one model's output to another's (85 ± 3 % for 175B
InstructGPT vs GPT-3) and how often outputs make things up, are toxic or ignore the instruction. We measure
the same things, with the gold labeler as the judge the paper never had.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from .labeler import SimulatedLabeler

RATE_NAMES = {  # the failure rates the course reports, each defined once
    "hallucination_rate": "states a false fact (honest < 1)",
    "toxicity_rate": "insults the user or helps with harm (harmless < 1)",
    "off_task_rate": "does not fully do what was asked (helpful < 1)",
    "instruction_following_rate": "fully does what was asked (helpful = 1)",
}


def judge_all(prompts: list[str], responses: list[str], labeler: SimulatedLabeler | None = None):
    """The labeler's Judgement of each (prompt, response) pair."""
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses; pass one response per prompt")
    labeler = labeler or SimulatedLabeler()
    return [labeler.explain(p, r) for p, r in zip(prompts, responses)]


def summarize(judgements) -> dict[str, float]:
    """Mean gold score and the failure rates (RATE_NAMES) of a list of Judgements."""
    n = len(judgements)
    if n == 0:
        raise ValueError("summarize needs at least one judgement")
    return {
        "gold_score": sum(j.gold for j in judgements) / n,
        "hallucination_rate": sum(j.hallucinated for j in judgements) / n,
        "toxicity_rate": sum(j.toxic for j in judgements) / n,
        "off_task_rate": sum(not j.followed_instruction for j in judgements) / n,
        "instruction_following_rate": sum(j.followed_instruction for j in judgements) / n,
    }


@dataclass
class WinRate:
    """How often model A's response is preferred to model B's on the same prompts (ties count half)."""

    rate: float   # (wins + ½·ties) / n
    low: float    # 95 % confidence interval
    high: float
    wins: int
    ties: int
    losses: int

    @property
    def n(self) -> int:
        return self.wins + self.ties + self.losses

    def __str__(self) -> str:
        return f"{100 * self.rate:.0f} ± {100 * (self.high - self.low) / 2:.0f} %"

    def as_dict(self) -> dict:
        return {"rate": self.rate, "ci95": [self.low, self.high], "wins": self.wins, "ties": self.ties,
                "losses": self.losses}


def win_rate(scores_a: list[float], scores_b: list[float], z: float = 1.96) -> WinRate:
    """Preference of A over B from paired gold scores, with a normal-approximation 95 % interval.

    Each prompt contributes 1 (A better), ½ (tie) or 0; the interval is mean ± z·sd/√n of those outcomes,
    clipped to [0, 1] — the "85 ± 3 %" of InstructGPT Fig. 1.
    """
    if len(scores_a) != len(scores_b) or not scores_a:
        raise ValueError(f"need the same, non-zero number of scores for both models "
                         f"(got {len(scores_a)} and {len(scores_b)})")
    outcomes = [1.0 if a > b else 0.5 if a == b else 0.0 for a, b in zip(scores_a, scores_b)]
    n = len(outcomes)
    mean = sum(outcomes) / n
    sd = math.sqrt(sum((o - mean) ** 2 for o in outcomes) / (n - 1)) if n > 1 else 0.0
    half = z * sd / math.sqrt(n)
    return WinRate(mean, max(0.0, mean - half), min(1.0, mean + half),
                   wins=outcomes.count(1.0), ties=outcomes.count(0.5), losses=outcomes.count(0.0))


def sample_responses(model, tokenizer, prompts: list[str], max_new_tokens: int = 32, temperature: float = 1.0,
                     seed: int = 0, batch_size: int = 64, greedy: bool = False) -> list[str]:
    """One sampled response per prompt (the course's evaluation decoding: the policy's own distribution)."""
    import torch

    from .sequences import generate

    generator = torch.Generator().manual_seed(seed)
    responses: list[str] = []
    for i in range(0, len(prompts), batch_size):
        rollout = generate(model, tokenizer, list(prompts[i:i + batch_size]), max_new_tokens=max_new_tokens,
                           temperature=temperature, generator=generator, greedy=greedy)
        responses.extend(rollout.texts(tokenizer))
    return responses


def evaluate_model(model, tokenizer, prompts: list[str], labeler: SimulatedLabeler | None = None, **sampling):
    """Sample a response per prompt and judge it: returns (responses, judgements, summary)."""
    responses = sample_responses(model, tokenizer, prompts, **sampling)
    judgements = judge_all(prompts, responses, labeler)
    return responses, judgements, summarize(judgements)


def policy_kl(policy, ref_model, tokenizer, prompts: list[str], max_new_tokens: int = 32, temperature: float = 1.0,
              seed: int = 0, batch_size: int = 64) -> float:
    """KL(π ‖ π_ref) per response in nats: the mean over prompts of Σ_t (log π − log π_ref) on samples of π.

    The k1 estimate summed over each response's tokens — the quantity InstructGPT's β penalises.
    """
    import torch

    from .sequences import generate, response_logprobs

    generator = torch.Generator().manual_seed(seed)
    total = 0.0
    for i in range(0, len(prompts), batch_size):
        rollout = generate(policy, tokenizer, list(prompts[i:i + batch_size]), max_new_tokens=max_new_tokens,
                           temperature=temperature, generator=generator)
        with torch.no_grad():
            ref = response_logprobs(ref_model, rollout.query_ids, rollout.query_mask, rollout.response_ids,
                                    rollout.response_mask, temperature)
        total += (rollout.logprobs - ref).masked_fill(~rollout.response_mask, 0.0).sum().item()
    return total / len(prompts)
