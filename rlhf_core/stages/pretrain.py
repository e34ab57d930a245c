"""Stage 0: pretrain a GPT-2-architecture base model on the mini world's "internet" (InstructGPT's GPT-3).

    python -m rlhf_core.stages.pretrain --model tiny     # rebuilds data/base-tiny  (the shipped checkpoint)
    python -m rlhf_core.stages.pretrain --model small    # rebuilds data/base-small

Plain next-token prediction on the pretraining corpus: documents joined with EOS, cut into random windows of
`seq_len` tokens. The last `heldout_fraction` of the documents is never trained on; its loss is the held-out
loss (and later, the alignment tax's perplexity). The tokenizer is a byte-level BPE trained on the corpus.
"""
from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..common.timing import Stopwatch
from ..models.loading import (SHIPPED, build_tokenizer, count_parameters, default_device, gpt2_config, new_model,
                              save_checkpoint)
from ..models.sequences import random_windows, stream_loss, token_stream
from ..world.data import PRETRAIN_HELDOUT_FRACTION, load_split, split_corpus
from .training import gradient_step

MODEL_SIZES = {  # shape of each shipped model; small has > 4x tiny's parameters and fits in 20 MB of float32
    "tiny": dict(n_layer=4, n_embd=128, n_head=4),
    "small": dict(n_layer=5, n_embd=256, n_head=8),
}


@dataclass
class PretrainConfig:
    model: str = "tiny"            # "tiny" or "small": the shape, from MODEL_SIZES
    steps: int = 600               # optimizer steps (~2.6 passes over the corpus); a notebook can use far fewer
    batch_size: int = 32           # windows per step
    seq_len: int = 128             # tokens per window
    lr: float = 2e-3               # peak learning rate, after linear warm-up, then cosine decay to 10 %
    warmup_steps: int = 100
    weight_decay: float = 0.01
    heldout_fraction: float = PRETRAIN_HELDOUT_FRACTION  # the corpus's last documents, kept out of training
    eval_every: int = 50           # held-out loss every this many steps
    seed: int = 0
    vocab_size: int = 1024         # byte-level BPE vocabulary (the world has ~530 distinct words)


def learning_rate(step: int, config: PretrainConfig) -> float:
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return config.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def pretrain(config: PretrainConfig = PretrainConfig(), tokenizer=None, progress: bool = True):
    """Train a base model from scratch. Returns (model, tokenizer, log) with the loss curve in `log`."""
    from tqdm.auto import tqdm

    if config.model not in MODEL_SIZES:
        raise ValueError(f"unknown model size {config.model!r}; choose one of {list(MODEL_SIZES)}")
    torch.manual_seed(config.seed)
    texts = list(load_split("pretrain")["text"])
    train_texts, heldout_texts = split_corpus(texts, config.heldout_fraction)
    if tokenizer is None:
        tokenizer = build_tokenizer(train_texts, vocab_size=config.vocab_size)
    train_stream = token_stream(tokenizer, train_texts)
    heldout_stream = token_stream(tokenizer, heldout_texts)
    device = default_device()
    model = new_model(gpt2_config(tokenizer, **MODEL_SIZES[config.model])).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay,
                                  betas=(0.9, 0.95))
    generator = torch.Generator().manual_seed(config.seed)
    log = {"config": asdict(config), "parameters": count_parameters(model), "train_tokens": len(train_stream),
           "step": [], "loss": [], "heldout_step": [], "heldout_loss": []}
    stopwatch = Stopwatch()
    bar = tqdm(range(config.steps), desc=f"pretraining {config.model}", disable=not progress)
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, config)
        batch = random_windows(train_stream, config.batch_size, config.seq_len, generator).to(device)  # (B, T)
        loss = model(input_ids=batch, attention_mask=torch.ones_like(batch), labels=batch).loss
        gradient_step(loss, model, optimizer, f"pretraining, step {step}",
                      f"lower PretrainConfig.lr (now {config.lr}) or raise warmup_steps")
        log["step"].append(step)
        log["loss"].append(round(loss.item(), 4))
        if (step + 1) % config.eval_every == 0 or step + 1 == config.steps:
            log["heldout_step"].append(step)
            log["heldout_loss"].append(round(stream_loss(model, heldout_stream, config.seq_len), 4))
            bar.set_postfix(loss=f"{loss.item():.3f}", heldout=f"{log['heldout_loss'][-1]:.3f}")
    log["seconds"] = stopwatch.seconds(1)
    return model.eval(), tokenizer, log


def plot_pretraining(log: dict):
    """The pretraining loss curve (training batches, smoothed, and held-out documents)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    losses = torch.tensor(log["loss"])
    window = max(1, len(losses) // 50)
    smooth = losses.unfold(0, window, 1).mean(1) if len(losses) >= window else losses
    ax.plot(log["step"][window - 1:], smooth.tolist(), label="training (smoothed)")
    ax.plot(log["heldout_step"], log["heldout_loss"], "o-", label="held-out documents")
    ax.set_xlabel("step")
    ax.set_ylabel("next-token loss (nats)")
    ax.set_title(f"Pretraining the {log['config']['model']} base model ({log['parameters'] / 1e6:.2f}M parameters)")
    ax.legend()
    fig.tight_layout()
    return fig


def main(argv: list[str] | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    parser = argparse.ArgumentParser(description="Pretrain a shipped base model on the mini world's corpus.")
    parser.add_argument("--model", choices=list(MODEL_SIZES), default="tiny")
    parser.add_argument("--out", default=None, help="checkpoint folder (default: the shipped data/base-<model>)")
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps (default: PretrainConfig)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tokenizer-from", default=None,
                        help="reuse the tokenizer of this checkpoint (the shipped models share one)")
    args = parser.parse_args(argv)
    config = PretrainConfig(model=args.model, seed=args.seed, **({"steps": args.steps} if args.steps else {}))
    if args.model == "small":
        config.lr = 1e-3
    tokenizer = None
    if args.tokenizer_from:
        from transformers import AutoTokenizer
        tokenizer = AutoTokenizer.from_pretrained(args.tokenizer_from)
    model, tokenizer, log = pretrain(config, tokenizer)
    out = Path(args.out) if args.out else SHIPPED[args.model]

    def write_loss_curve(folder: Path) -> None:
        (folder / "pretrain_log.json").write_text(json.dumps(log) + "\n")
        plot_pretraining(log).savefig(folder / "pretrain_loss.png", dpi=100)

    save_checkpoint(model, tokenizer, out, extra=write_loss_curve)  # the model and its loss curve, all or nothing
    print(f"{args.model}: {log['parameters']:,} parameters, {log['seconds']} s, final training loss "
          f"{log['loss'][-1]:.3f}, held-out loss {log['heldout_loss'][-1]:.3f} -> {out}")


if __name__ == "__main__":
    main()
