"""Time one reward-model training step three ways: one padded batch, length-sorted chunks of packed rows, and the
course's layout, which also reads each prompt once for its K answers.

    python benchmarks/reward_step.py [--steps 10] [--model tiny] [--threads N] [--answers sft|base]

A baseline for speed work: it prints figures, nothing asserts a time. A step is what `train_reward_model` does
for `RewardConfig.batch_size` rankings of K answers: score every answer (forward), the ranking loss, backward.
The cost depends on the answers' lengths, not on the weights, so the answers come as the course's do: K − 1 from
the SFT model (`load_or_train_sft`, trained once if runs/ has none) and one from the base model; `--answers base`
samples all K from the base model instead (longer answers, no training).
"Padded" is the concatenated layout (left-padded prompt + right-padded answer, one (B·K, P + T) batch, what the
course did first); "chunked" packs each row and scores length-sorted chunks (`sequences.score_in_length_chunks`,
what it did next); "shared prompt" is `reward.comparison_scores` (`RewardModel.score_ranking`: each prompt's keys
and values computed once, then its K answers against them). The three alternate step by step in this process, and
each figure is also given as a ratio to the padded one.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from rlhf_core import SimulatedLabeler, load_base, load_split
from rlhf_core.models.heads import RewardModel
from rlhf_core.losses import ranking_loss
from rlhf_core.stages.reward import RewardConfig, collect_comparisons, comparison_scores
from rlhf_core.models.sequences import (concat_query_response, pack_query_response, score_in_length_chunks,
                                        tokenize_prompts, tokenize_responses)
from rlhf_core.stages.sft import load_or_train_sft


def padded_scores(reward_model, tokenizer, comparisons: list[dict]) -> torch.Tensor:
    """The old layout: one (B·K, P + T) batch, padding and all -> (B, K)."""
    k = len(comparisons[0]["responses"])
    query_ids, query_mask = tokenize_prompts(tokenizer, [c["prompt"] for c in comparisons for _ in range(k)])
    response_ids, response_mask = tokenize_responses(tokenizer, [r for c in comparisons for r in c["responses"]])
    return reward_model(*concat_query_response(query_ids, query_mask, response_ids, response_mask)).view(-1, k)


def chunked_scores(reward_model, tokenizer, comparisons: list[dict]) -> torch.Tensor:
    """Packed rows (prompt + answer, no padding between them) in length-sorted chunks -> (B, K)."""
    k = len(comparisons[0]["responses"])
    query_ids, query_mask = tokenize_prompts(tokenizer, [c["prompt"] for c in comparisons for _ in range(k)])
    response_ids, response_mask = tokenize_responses(tokenizer, [r for c in comparisons for r in c["responses"]])
    input_ids, attention_mask, _ = pack_query_response(query_ids, query_mask, response_ids, response_mask)
    return score_in_length_chunks(reward_model, input_ids, attention_mask).view(-1, k)


def timed_step(score, reward_model, tokenizer, batch) -> float:
    start = time.perf_counter()
    reward_model.zero_grad(set_to_none=True)
    ranking_loss(score(reward_model, tokenizer, batch)).backward()
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
    model, tokenizer = load_base(args.model)
    config = RewardConfig()
    writers = [(model, config.k)]
    if args.answers == "sft":
        writers = [(load_or_train_sft(args.model)[0], config.k - config.k_from_base), (model, config.k_from_base)]
    prompts = list(load_split("rm")["prompt"])[:config.batch_size * args.steps]
    comparisons = collect_comparisons(writers, tokenizer, prompts, SimulatedLabeler(seed=0),
                                      max_new_tokens=config.max_new_tokens)
    reward_model = RewardModel.from_causal_lm(model).train()
    batches = [comparisons[i:i + config.batch_size] for i in range(0, len(comparisons), config.batch_size)]
    layouts = {"padded": padded_scores, "chunked": chunked_scores, "shared prompt": comparison_scores}
    times = {name: [] for name in layouts}
    for score in layouts.values():  # warm-up: first calls allocate and pick kernels
        timed_step(score, reward_model, tokenizer, batches[0])
    for batch in batches:
        for name, score in layouts.items():
            times[name].append(timed_step(score, reward_model, tokenizer, batch))
    median = {name: statistics.median(t) for name, t in times.items()}
    print(f"reward-model step, model {args.model!r}, {config.batch_size} rankings of K = {config.k} answers "
          f"({args.answers} answers), "
          f"torch threads {torch.get_num_threads()}, {len(batches)} steps each (median)")
    for name in times:
        print(f"  {name:14s} {median[name]:7.3f} s   {median[name] / median['padded']:5.2f} x padded")


if __name__ == "__main__":
    main()
