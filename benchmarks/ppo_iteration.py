"""Time PPO iterations at the default settings: seconds per phase, episodes per second, peak memory.

    python benchmarks/ppo_iteration.py [--iterations 5] [--model tiny] [--threads N]

A baseline for speed work: it prints figures, nothing asserts a time. Phases follow PPOTrainer.step():
generation (sampling with the KV cache), scoring (reference log-probs, reward model, value model), GAE
(per-token rewards, advantages, whitening), PPO epochs (the gradient steps). The reward model and value model
are fresh heads on the SFT-less base model: their weights do not change the cost. Each figure is also shown as
a ratio to the generation phase measured in the same process, so runs on different machines compare.
"""
from __future__ import annotations

import argparse
import copy
import resource
import time

import torch

from rlhf_core import load_base, load_split
from rlhf_core.models.heads import RewardModel
from rlhf_core.stages.ppo import PPOConfig, PPOTrainer


def timed_step(trainer: PPOTrainer) -> dict[str, float]:
    """One PPOTrainer iteration, phase by phase: the trainer's own sample, score, advantages and update."""
    times = {}
    prompts = trainer.next_prompts()
    start = time.perf_counter()
    rollout = trainer.sample(prompts)
    times["generation"] = time.perf_counter() - start
    start = time.perf_counter()
    ref_logprobs, scores, values = trainer.score(rollout)
    times["scoring"] = time.perf_counter() - start
    start = time.perf_counter()
    batch = trainer.advantages(rollout, ref_logprobs, scores, values)
    times["gae"] = time.perf_counter() - start
    start = time.perf_counter()
    trainer.update(batch)
    times["ppo_epochs"] = time.perf_counter() - start
    times["total"] = sum(times.values())
    times["tokens"] = float(rollout.response_mask.sum())
    return times


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: as rlhf_core sets them)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    policy, tokenizer = load_base(args.model)
    reward_model = RewardModel.from_causal_lm(policy)
    config = PPOConfig(iterations=args.iterations)
    trainer = PPOTrainer(copy.deepcopy(policy), tokenizer, reward_model, config, ref_model=policy,
                         prompts=list(load_split("ppo")["prompt"]))
    timed_step(trainer)  # warm-up: first calls allocate and pick kernels
    runs = [timed_step(trainer) for _ in range(args.iterations)]
    mean = {k: sum(r[k] for r in runs) / len(runs) for k in runs[0]}
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"PPO iteration, model {args.model!r}, batch {config.batch_size} episodes, {config.ppo_epochs} epochs of "
          f"minibatch {config.minibatch_size}, torch threads {torch.get_num_threads()}, {args.iterations} iterations")
    for phase in ("generation", "scoring", "gae", "ppo_epochs", "total"):
        print(f"  {phase:11s} {mean[phase]:7.3f} s   {mean[phase] / mean['generation']:6.2f} x generation")
    print(f"  episodes/s  {config.batch_size / mean['total']:7.1f}   response tokens/s {mean['tokens'] / mean['total']:7.0f}")
    print(f"  peak memory (max RSS) {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
