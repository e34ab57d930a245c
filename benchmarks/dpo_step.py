"""Time one DPO training step two ways: every answer on its own packed row, and the course's layout, which reads each
prompt once for its K answers.

    python benchmarks/dpo_step.py [--steps 10] [--model tiny] [--threads N] [--answers sft|base]

A baseline for speed work: it prints figures, nothing asserts a time. A step is what `train_dpo` does for
`DPOConfig.batch_size` rankings of K answers: the policy's log-probs of every answer (forward), the DPO loss over
every pair of different answers against the frozen reference's log-probs, backward. The rankings are the course's
(`reward.comparison_sources`: SFT answers, some sampled sharper, and one from the base model; the SFT model comes
from `load_or_train_sft`, trained once if runs/ has none); `--answers base` has the base model write all K and be
the policy (no training).
"Own rows" is what `dpo.answer_logprobs` did first: each prompt repeated for each of its K answers, prompt and answer
packed into one row (`sequences.response_logprobs`), one (B·K, P + T) pass. "Shared prompt" is what it does now
(`rankings.shared_prompt_logprobs`): each prompt's keys and values computed once, then its K answers against them
in length-sorted chunks. The two alternate step by step in this process; the figure is also given as a ratio.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from rlhf_core import SimulatedLabeler, load_base, load_split
from rlhf_core.models.sequences import response_logprobs, tokenize_prompts, tokenize_responses
from rlhf_core.stages.dpo import DPOConfig, answer_logprobs, distinct_pairs, ranking_dpo_loss, ranking_logprobs
from rlhf_core.stages.reward import RewardConfig, collect_comparisons, comparison_sources
from rlhf_core.stages.sft import load_or_train_sft


def own_row_logprobs(model, tokenizer, comparisons: list[dict]) -> torch.Tensor:
    """The earlier layout: every (prompt, answer) on its own packed row, the prompt read K times -> (B, K)."""
    k = len(comparisons[0]["responses"])
    query_ids, query_mask = tokenize_prompts(tokenizer, [c["prompt"] for c in comparisons for _ in range(k)])
    response_ids, response_mask = tokenize_responses(tokenizer, [r for c in comparisons for r in c["responses"]])
    return response_logprobs(model, query_ids, query_mask, response_ids, response_mask).sum(1).view(-1, k)


def timed_step(logprobs, policy, tokenizer, batch, ref_logps, beta) -> float:
    start = time.perf_counter()
    policy.zero_grad(set_to_none=True)
    loss, _ = ranking_dpo_loss(logprobs(policy, tokenizer, batch), ref_logps, distinct_pairs(batch), beta)
    loss.backward()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: the course's policy)")
    parser.add_argument("--answers", choices=("sft", "base"), default="sft", help="who writes the ranked answers")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    base, tokenizer = load_base(args.model)
    config, dpo = RewardConfig(), DPOConfig()
    policy, writers = base, [(base, config.k)]    # the policy's starting point, and its frozen reference
    if args.answers == "sft":
        policy = load_or_train_sft(args.model)[0]
        writers = comparison_sources(policy, base, config)
    prompts = list(load_split("rm")["prompt"])[:dpo.batch_size * args.steps]
    comparisons = collect_comparisons(writers, tokenizer, prompts, SimulatedLabeler(seed=0),
                                      max_new_tokens=config.max_new_tokens)
    ref_logps = ranking_logprobs(policy, tokenizer, comparisons)                     # (N, K), read once
    policy.requires_grad_(True).eval()  # no step is taken, so the policy needs no copy of its own
    starts = range(0, len(comparisons), dpo.batch_size)
    batches = [(comparisons[i:i + dpo.batch_size], ref_logps[i:i + dpo.batch_size]) for i in starts]
    layouts = {"own rows": own_row_logprobs, "shared prompt": answer_logprobs}
    times = {name: [] for name in layouts}
    for logprobs in layouts.values():  # warm-up: first calls allocate and pick kernels
        timed_step(logprobs, policy, tokenizer, *batches[0], dpo.beta)
    for batch, ref in batches:
        for name, logprobs in layouts.items():
            times[name].append(timed_step(logprobs, policy, tokenizer, batch, ref, dpo.beta))
    median = {name: statistics.median(t) for name, t in times.items()}
    print(f"DPO step, model {args.model!r}, {dpo.batch_size} rankings of K = {config.k} answers "
          f"({args.answers} answers), "
          f"torch threads {torch.get_num_threads()}, {len(batches)} steps each (median)")
    for name in times:
        print(f"  {name:14s} {median[name]:7.3f} s   {median[name] / median['own rows']:5.2f} x own rows")


if __name__ == "__main__":
    main()
