"""rlhf_core's PPO side by side with TRL's: episodes per second, seconds per iteration, peak memory.

    pip install --no-deps -r benchmarks/requirements.txt   # trl 1.12.0 and accelerate: benchmark-only
    python benchmarks/ppo_vs_trl.py [--model tiny|small] [--iterations 3] [--repeats 2] [--threads N]

A baseline for speed work, like benchmarks/ppo_iteration.py: it prints figures, nothing asserts a time. TRL 1.12
is the last release with PPO (`trl.experimental.ppo.PPOTrainer`); the course itself never imports trl.

How it measures. Each run is one side in a child process of its own, started from this script one at a time, in
the order rlhf_core, TRL, rlhf_core, TRL ... (`--repeats` pairs), so that a slow spell of the machine hits both
sides alike, and so that each run's max RSS is that side's own (RSS is per process: in one process the second
side would inherit the first side's peak). The peak includes python, torch and the imports; "setup" is the
peak before the first iteration, so the difference is what training adds. A run does 1 warm-up iteration and
then `--iterations` timed ones: rlhf_core's by timing `PPOTrainer.step()`; TRL's by one `train()` over
64 × (1 + iterations) episodes, with a TrainerCallback that notes the clock at each `on_step_end`: the time
between two step ends is one iteration (the first, from `on_train_begin`, is the warm-up and is dropped). The
figures are medians over all timed iterations of all runs of a side; the ratio is rlhf_core's episodes/s over
TRL's (> 1: rlhf_core is faster). Each side also counts the tokens its policy's forward passes take in while
gradients are on — the PPO epochs' passes, padding included (a forward pre-hook, `TokenCounter`; generation and
scoring run without gradients on both sides) — and the script prints their ratio: at `small`, where both sides
pay about the same per token, the two ratios come out close.

What is the same: the shipped base model (load_base) as policy and as frozen reference; the PPO prompts, tokenised
without special tokens and left-padded; 64 episodes per rollout, generated as one batch; minibatches of 16
episodes, one gradient step each; 4 PPO epochs (16 gradient steps per iteration); at most 32 new tokens, stopping
at EOS; temperature 1 (pure sampling, no top-k/top-p); a fixed KL coefficient β = 0.2 (the adaptive controller
switched off; the course's initial β until 2026-12-03, now 0.1, kept so that the figures compare with earlier
runs) with the k1 estimator; missing-EOS penalty 1; clip ranges 0.2 and 0.2; value-loss weight 0.5; γ = 1, λ = 0.95;
whitened advantages; policy learning rate 1e-5; float32 on the CPU, no gradient checkpointing, dropout off. The
reward model is `RewardModel.from_causal_lm(policy)` and TRL's is a GPT2ForSequenceClassification (num_labels=1)
holding the same body and head weights; both value models are that body with the head at V = 0 (the course's default
critic).

What differs, and could not be made equal: TRL trains policy and critic with one AdamW (one learning rate, 1e-5,
for both; constant schedule) on the summed loss, and does not clip gradients; rlhf_core has two Adam optimizers
(critic 1e-4) and clips each gradient norm at 1. TRL's heads have no bias (the course's starts at 0, so the
scores agree). TRL samples with transformers' `generate` and keeps its logits (B, T, V) for the log-probs;
rlhf_core has its own sampling loop. rlhf_core's `step()` also scores each sample with the simulated labeler
(objective/gold) and decodes the texts; TRL's iteration logs its own statistics (printed to the child's
captured output) and calls gc.collect(). Both sides stop generating once every
response has its EOS, so their response lengths are those their own samples happen to have.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

EPISODES, MINIBATCH, EPOCHS, MAX_NEW_TOKENS, TEMPERATURE, KL_COEF = 64, 16, 4, 32, 1.0, 0.2
MISSING_EOS_PENALTY, LR, VALUE_COEF = 1.0, 1e-5, 0.5


class TokenCounter:
    """Tokens a model's forward passes take in while gradients are on, padding included (a forward pre-hook)."""

    def __init__(self, model):
        self.total = 0
        model.register_forward_pre_hook(self.count, with_kwargs=True)

    def count(self, module, args, kwargs) -> None:
        import torch

        if torch.is_grad_enabled():
            self.total += (kwargs["input_ids"] if "input_ids" in kwargs else args[0]).numel()


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports kB


def build_models(model_name: str):
    """The shipped base, its tokenizer, the course's reward model built from it, and the PPO prompts."""
    from rlhf_core import load_base, load_split
    from rlhf_core.models.heads import RewardModel

    policy, tokenizer = load_base(model_name)
    return policy, tokenizer, RewardModel.from_causal_lm(policy), list(load_split("ppo")["prompt"])


def run_rlhf_core(model_name: str, iterations: int) -> tuple[list[float], list[int], float]:
    """Seconds and policy tokens with gradients of each PPOTrainer.step() after one warm-up, and the peak RSS
    before the first step."""
    import copy

    from rlhf_core.stages.ppo import PPOConfig, PPOTrainer

    policy, tokenizer, reward_model, prompts = build_models(model_name)
    config = PPOConfig(batch_size=EPISODES, minibatch_size=MINIBATCH, ppo_epochs=EPOCHS, lr=LR,
                       clip_range=0.2, value_clip_range=0.2, value_coef=VALUE_COEF, gamma=1.0, lam=0.95,
                       init_kl_coef=KL_COEF, adaptive_kl=False, temperature=TEMPERATURE,
                       max_new_tokens=MAX_NEW_TOKENS,
                       missing_eos_max_score=-MISSING_EOS_PENALTY)  # a cap where TRL subtracts: the same work
    trainer = PPOTrainer(copy.deepcopy(policy), tokenizer, reward_model, config, prompts=prompts,
                         ref_model=policy)  # the critic: PPOTrainer's default, the RM's body with V = 0
    tokens = TokenCounter(trainer.policy)
    setup_mb = peak_rss_mb()
    seconds, counts = [], []
    for _ in range(1 + iterations):
        start = time.perf_counter()
        trainer.step()
        seconds.append(time.perf_counter() - start)
        counts.append(tokens.total)
    return seconds[1:], [b - a for a, b in zip(counts, counts[1:])], setup_mb


def trl_scalar_model(reward_model, config, zero_head: bool = False):
    """TRL's kind of reward/value model: GPT2ForSequenceClassification (num_labels=1) with the course reward
    model's body and head weight (TRL's head has no bias; the course's is 0 here). zero_head: V = 0, the course's
    initial critic."""
    import copy

    import torch
    from transformers import AutoModelForSequenceClassification

    config = copy.deepcopy(config)
    config.num_labels = 1
    model = AutoModelForSequenceClassification.from_config(config, attn_implementation="sdpa")
    model.transformer.load_state_dict(reward_model.backbone.state_dict())
    with torch.no_grad():
        model.score.weight.copy_(torch.zeros_like(reward_model.head.weight) if zero_head else reward_model.head.weight)
    return model


def run_trl(model_name: str, iterations: int) -> tuple[list[float], list[int], float]:
    """Seconds and policy tokens with gradients of each TRL PPO iteration after one warm-up (clock and count at
    each on_step_end), and the setup peak RSS."""
    import copy

    from datasets import Dataset
    from transformers import TrainerCallback
    from trl.experimental.ppo import PPOConfig, PPOTrainer

    policy, tokenizer, reward_model, prompts = build_models(model_name)
    dataset = Dataset.from_dict({"input_ids": tokenizer(prompts, add_special_tokens=False)["input_ids"]})
    trained = copy.deepcopy(policy)
    tokens = TokenCounter(trained)
    step_ends, counts = [], []

    class Clock(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            step_ends.append(time.perf_counter())
            counts.append(tokens.total)

        def on_step_end(self, args, state, control, **kwargs):
            step_ends.append(time.perf_counter())
            counts.append(tokens.total)

    with tempfile.TemporaryDirectory() as output_dir:
        config = PPOConfig(
            output_dir=output_dir, report_to="none", save_strategy="no", eval_strategy="no", logging_steps=10**6,
            disable_tqdm=True, num_sample_generations=0, use_cpu=True, bf16=False, fp16=False,
            gradient_checkpointing=False, seed=0,
            total_episodes=EPISODES * (1 + iterations),
            per_device_train_batch_size=EPISODES, gradient_accumulation_steps=1,  # a rollout: 64 episodes
            num_mini_batches=EPISODES // MINIBATCH,    # 4 minibatches of 16, one optimizer step each
            local_rollout_forward_batch_size=EPISODES,  # generate and score the rollout as one batch
            num_ppo_epochs=EPOCHS, response_length=MAX_NEW_TOKENS, temperature=TEMPERATURE,
            stop_token_id=tokenizer.eos_token_id, missing_eos_penalty=MISSING_EOS_PENALTY,
            kl_coef=KL_COEF, kl_estimator="k1", whiten_rewards=False, cliprange=0.2, cliprange_value=0.2,
            vf_coef=VALUE_COEF, gamma=1.0, lam=0.95, learning_rate=LR, lr_scheduler_type="constant")
        trainer = PPOTrainer(args=config, processing_class=tokenizer, model=trained, ref_model=policy,
                             reward_model=trl_scalar_model(reward_model, policy.config),
                             value_model=trl_scalar_model(reward_model, policy.config, zero_head=True),
                             train_dataset=dataset, callbacks=[Clock()])
        setup_mb = peak_rss_mb()
        trainer.train()
    seconds = [b - a for a, b in zip(step_ends, step_ends[1:])]
    return seconds[1:], [b - a for a, b in zip(counts, counts[1:])][1:], setup_mb


def child(side: str, model_name: str, iterations: int, threads: int | None) -> None:
    """One run of one side; prints a JSON line for the parent."""
    import torch

    import rlhf_core  # noqa: F401  importing it may set torch's thread count, so --threads comes after
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    seconds, tokens, setup_mb = (run_rlhf_core if side == "rlhf_core" else run_trl)(model_name, iterations)
    print(json.dumps({"seconds": seconds, "tokens": tokens, "setup_mb": setup_mb, "peak_mb": peak_rss_mb(),
                      "threads": torch.get_num_threads()}))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="tiny", choices=["tiny", "small"])
    parser.add_argument("--iterations", type=int, default=3, help="timed iterations per run, after 1 warm-up")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each side, alternated")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: as rlhf_core sets them)")
    parser.add_argument("--side", choices=["rlhf_core", "trl"], help=argparse.SUPPRESS)  # a child run
    args = parser.parse_args(argv)
    if args.side:
        return child(args.side, args.model, args.iterations, args.threads)

    env = os.environ | {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TRL_EXPERIMENTAL_SILENCE": "1"}
    runs = {"rlhf_core": [], "trl": []}
    for repeat in range(args.repeats):
        for side in runs:  # alternate: rlhf_core, trl, rlhf_core, trl ...
            command = [sys.executable, __file__, "--side", side, "--model", args.model, "--iterations",
                       str(args.iterations), *(["--threads", str(args.threads)] if args.threads else [])]
            done = subprocess.run(command, capture_output=True, text=True, env=env)
            if done.returncode != 0:
                sys.exit(f"{side} run {repeat + 1} failed:\n{done.stderr[-4000:]}")
            result = json.loads(done.stdout.strip().splitlines()[-1])
            runs[side].append(result)
            print(f"  run {repeat + 1} {side:9s} s/iteration " + " ".join(f"{s:.2f}" for s in result["seconds"])
                  + f"   peak RSS {result['peak_mb']:.0f} MB", flush=True)

    threads = " and ".join(sorted({str(r["threads"]) for results in runs.values() for r in results}))
    print(f"PPO, rlhf_core vs TRL 1.12, model {args.model!r}, {EPISODES} episodes per rollout, {EPOCHS} epochs of "
          f"minibatch {MINIBATCH}, {MAX_NEW_TOKENS} max new tokens, torch threads {threads}, "
          f"{args.repeats} runs × {args.iterations} timed iterations per side (median)")
    median = {side: statistics.median(s for r in results for s in r["seconds"]) for side, results in runs.items()}
    for side, results in runs.items():
        setup, peak = max(r["setup_mb"] for r in results), max(r["peak_mb"] for r in results)
        print(f"  {side:9s}  {median[side]:7.2f} s/iteration  {EPISODES / median[side]:6.1f} episodes/s   "
              f"peak RSS {peak:5.0f} MB (setup {setup:.0f} MB, training +{peak - setup:.0f} MB)")
    print(f"  ratio rlhf_core / TRL episodes/s: {median['trl'] / median['rlhf_core']:.2f}")
    tokens = {side: statistics.mean(t for r in results for t in r["tokens"]) for side, results in runs.items()}
    print(f"  policy tokens per iteration in the PPO epochs, padding included (mean): "
          f"rlhf_core {tokens['rlhf_core']:.0f}, TRL {tokens['trl']:.0f}, ratio {tokens['trl'] / tokens['rlhf_core']:.2f}")


if __name__ == "__main__":
    main()
