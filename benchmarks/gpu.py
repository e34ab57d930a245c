"""The course on a GPU: the whole pipeline at the tiny size, then PPO iterations at GPT-2 small's size (124M).

    python benchmarks/gpu.py                          # on a machine with a CUDA GPU (RLHF_DEVICE unset or "cuda")
    python benchmarks/gpu.py --device cpu --quick     # the same script on the CPU, cut short: checks that it runs

Prints the wall time of each part and the peak memory: the GPU's (torch.cuda.max_memory_allocated) on a GPU, the
process's resident set on the CPU. Nothing asserts a time.

1. `rlhf_core.pipeline` at the tiny size, every run of it (SFT, the reward model, PPO, PPO-ptx, the perfect reward,
   DPO, RLOO, the small model's SFT, the evaluation) as `python -m rlhf_core.pipeline` runs them, with the seconds
   of each stage from its results.json. The models are ~1M parameters, too small to fill a GPU's kernels: expect
   little gain over a CPU here; the point is that every stage runs where `models.default_device()` says.
2. PPO at GPT-2 small's shape (12 layers, 768 wide, 50,257-token vocabulary: 124M parameters), with the course's
   PPOConfig (64 episodes of up to 32 new tokens, 2 epochs of minibatches of 16): the real GPT-2 if the Hugging
   Face hub or its cache has it, else random weights of the same shape over the course's tokenizer (the cost of an
   iteration depends on the shape, not on the weights). Policy, reference, reward model and critic are four
   124M models, as in InstructGPT's PPO. The first iteration (kernel selection, allocation) is timed apart.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path


def parse(argv: list[str] | None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default=None, help='"cuda" (the default where there is a GPU) or "cpu"')
    parser.add_argument("--quick", action="store_true",
                        help="a short pipeline (3 PPO iterations, 16 eval prompts) and a small PPO batch: a check "
                             "that the script runs, not a measurement")
    parser.add_argument("--iterations", type=int, default=3, help="timed PPO iterations at 124M after the first")
    parser.add_argument("--skip-pipeline", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    if args.device:
        os.environ["RLHF_DEVICE"] = args.device  # read by rlhf_core.models.loading.default_device, the course's one choice
    import torch
    import transformers

    from rlhf_core.models.loading import default_device

    transformers.utils.logging.disable_progress_bar()  # the "Loading weights" bar of every from_pretrained

    device = default_device()
    if device.type != "cuda" and not args.quick:
        sys.exit(f"No GPU here (the course's device is {device}). Run this where torch sees a CUDA GPU, or pass "
                 "--device cpu --quick to check the script on the CPU.")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {device} ({name}); torch {torch.__version__}")
    if not args.skip_pipeline:
        pipeline_on(device, args.quick)
    ppo_at_gpt2_small(device, args.quick, args.iterations)


def synchronize(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device) -> str:
    import torch

    if device.type == "cuda":
        return f"{torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB GPU peak"
    return f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB peak RSS (the whole process)"


def pipeline_on(device, quick: bool) -> None:
    from rlhf_core.pipeline import PipelineConfig, run_pipeline

    config = PipelineConfig()
    if quick:
        config.ppo.iterations, config.eval_prompts, config.small_model, config.beyond_ppo = 3, 16, None, False
        config.sft.epochs, config.reward.rounds = 1, 1
    reset_peak(device)
    with tempfile.TemporaryDirectory() as out:
        synchronize(device)
        start = time.perf_counter()
        results = run_pipeline(config, out_dir=out, log=lambda *a, **k: None)  # tqdm bars: minutes, even on a GPU
        synchronize(device)
        total = time.perf_counter() - start
        stages = json.loads((Path(out) / "results.json").read_text())["seconds"]
    print(f"\n1. the pipeline at the tiny size{' (--quick)' if quick else ''}: {total:.0f} s in all, {peak_memory(device)}")
    for stage, seconds in stages.items():
        print(f"   {stage:<28s} {seconds:8.1f} s")
    gold = results.get("gold_score", {})
    print("   gold: " + ", ".join(f"{k} {v:.2f}" for k, v in gold.items()))


def gpt2_small(device):
    """(model, tokenizer, where from): the real GPT-2 if it can be had, else random weights of its shape."""
    from rlhf_core.models.loading import OfflineError, gpt2_config, load_base, new_model, use_fused_gelu

    try:
        model, tokenizer = load_base("gpt2", device=device)
        return model, tokenizer, "GPT-2 small from the Hugging Face hub or its cache"
    except OfflineError:
        _, tokenizer = load_base("tiny", device="cpu")
        config = gpt2_config(tokenizer, n_layer=12, n_embd=768, n_head=12, n_positions=1024)
        config.vocab_size = 50257  # GPT-2's vocabulary: its embedding and LM head, the largest matrices
        model = new_model(config)
        use_fused_gelu(model)
        return model.to(device).eval(), tokenizer, "random weights of GPT-2 small's shape (the hub is unreachable)"


def ppo_at_gpt2_small(device, quick: bool, iterations: int) -> None:
    import torch

    from rlhf_core import load_split
    from rlhf_core.models.heads import RewardModel
    from rlhf_core.models.loading import count_parameters
    from rlhf_core.stages.ppo import PPOConfig, PPOTrainer

    torch.manual_seed(0)
    policy, tokenizer, source = gpt2_small(device)
    config = PPOConfig(batch_size=8, minibatch_size=4, max_new_tokens=8) if quick else PPOConfig()
    reward_model = RewardModel.from_causal_lm(policy)
    reset_peak(device)
    trainer = PPOTrainer(copy.deepcopy(policy), tokenizer, reward_model, config, ref_model=policy,
                         prompts=list(load_split("ppo")["prompt"]))
    times = []
    for _ in range(1 + (1 if quick else iterations)):
        synchronize(device)
        start = time.perf_counter()
        trainer.step()
        synchronize(device)
        times.append(time.perf_counter() - start)
    steady = sorted(times[1:])[len(times[1:]) // 2]
    print(f"\n2. PPO at GPT-2 small's size: {count_parameters(policy) / 1e6:.0f}M parameters per model, {source}")
    print(f"   {config.batch_size} episodes per iteration, {config.ppo_epochs} epochs of minibatches of "
          f"{config.minibatch_size}, up to {config.max_new_tokens} new tokens")
    print(f"   first iteration {times[0]:.2f} s; then median {steady:.2f} s "
          f"({config.batch_size / steady:.1f} episodes/s) over {len(times) - 1}; {peak_memory(device)}")


if __name__ == "__main__":
    main()
