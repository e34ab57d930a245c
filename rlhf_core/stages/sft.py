"""Stage 1: supervised fine-tuning on labeler demonstrations (InstructGPT §3.5, App. C.1).

The base model is trained to continue each prompt with its demonstration, with the loss on the response
tokens only (the prompt is given, not learned). InstructGPT trains 16 epochs with cosine learning-rate
decay; its SFT models overfit on validation loss after one epoch, yet more epochs keep improving the reward
model score and human preference — so validation loss is not how they pick an SFT model.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..common.modes import eval_mode
from ..common.paths import run_path
from ..common.timing import Stopwatch
from ..losses import sft_loss
from ..models.loading import SHIPPED, load_base, on_model_device, save_checkpoint
from ..models.sequences import concat_query_response, position_ids_from_mask, tokenize_prompts, tokenize_responses
from ..world.data import load_split
from . import provenance
from .training import gradient_step

@dataclass
class SFTConfig:
    epochs: int = 16             # InstructGPT: 16 epochs (App. C.1)
    batch_size: int = 16         # demonstrations per step
    lr: float = 1e-4             # peak learning rate, cosine decay to 0; higher rates overwrite what pretraining taught
    weight_decay: float = 0.0
    val_fraction: float = 0.1    # demonstrations held out for the validation loss
    seed: int = 0


def sft_batch(tokenizer, prompts: list[str], responses: list[str]):
    """Prompt + demonstration (+ EOS) as one batch: input_ids (B, L), attention_mask (B, L), response_mask (B, L).

    The layout is the one `generate` produces (left-padded prompt, right-padded response ending in EOS), so
    the model learns exactly the sequences it will later sample. response_mask is True on the demonstration's
    tokens and its EOS: the only tokens the loss sees.
    """
    query_ids, query_mask = tokenize_prompts(tokenizer, prompts)                 # (B, P)
    response_ids, response_mask = tokenize_responses(tokenizer, responses)       # (B, T), EOS appended
    input_ids, attention_mask = concat_query_response(query_ids, query_mask, response_ids, response_mask)
    full_response_mask = torch.cat([torch.zeros_like(query_mask), response_mask], dim=1)  # (B, L)
    return input_ids, attention_mask, full_response_mask


def batch_sft_loss(model, tokenizer, prompts: list[str], responses: list[str]) -> torch.Tensor:
    """The SFT loss (mean cross-entropy on response tokens) of one batch of demonstrations."""
    input_ids, attention_mask, response_mask = on_model_device(model, *sft_batch(tokenizer, prompts, responses))
    logits = model(input_ids=input_ids, attention_mask=attention_mask.long(),
                   position_ids=position_ids_from_mask(attention_mask)).logits   # (B, L, V)
    return sft_loss(logits, input_ids, response_mask)


def train_sft(model, tokenizer, config: SFTConfig = SFTConfig(), demonstrations=None, callback=None,
              progress: bool = True) -> dict:
    """Fine-tune `model` in place on demonstrations; returns the log {"step", "sft/loss", "sft/val_loss", ...}.

    demonstrations: a dataset/list of {"prompt", "response"} records (default: the "sft" split).
    callback(step, metrics) is called after every step (e.g. a LiveDashboard's update).
    """
    from tqdm.auto import tqdm

    records = list(demonstrations if demonstrations is not None else load_split("sft"))
    generator = torch.Generator().manual_seed(config.seed)
    order = torch.randperm(len(records), generator=generator).tolist()
    n_val = max(1, int(len(records) * config.val_fraction)) if config.val_fraction > 0 else 0
    val = [records[i] for i in order[:n_val]]
    train = [records[i] for i in order[n_val:]]
    steps_per_epoch = math.ceil(len(train) / config.batch_size)
    total_steps = config.epochs * steps_per_epoch
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * s / total_steps)))
    log = {"config": asdict(config), "step": [], "sft/loss": [], "epoch_step": [], "sft/val_loss": []}
    model.train()
    stopwatch = Stopwatch()
    bar = tqdm(total=total_steps, desc="SFT", disable=not progress)
    step = 0
    for epoch in range(config.epochs):
        perm = torch.randperm(len(train), generator=generator).tolist()
        for i in range(0, len(train), config.batch_size):
            batch = [train[j] for j in perm[i:i + config.batch_size]]
            loss = batch_sft_loss(model, tokenizer, [r["prompt"] for r in batch], [r["response"] for r in batch])
            gradient_step(loss, model, optimizer, f"SFT, step {step}", f"lower SFTConfig.lr (now {config.lr})")
            schedule.step()
            metrics = {"sft/loss": loss.item()}
            log["step"].append(step)
            log["sft/loss"].append(round(loss.item(), 4))
            if val and i + config.batch_size >= len(train):  # end of an epoch
                metrics["sft/val_loss"] = validation_loss(model, tokenizer, val)
                log["epoch_step"].append(step)
                log["sft/val_loss"].append(round(metrics["sft/val_loss"], 4))
            if callback is not None:
                callback(step, metrics)
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
            step += 1
    bar.close()
    model.eval()
    log["seconds"] = stopwatch.seconds(1)
    return log


@torch.no_grad()
def validation_loss(model, tokenizer, records) -> float:
    with eval_mode(model):
        loss = batch_sft_loss(model, tokenizer, [r["prompt"] for r in records], [r["response"] for r in records])
    return loss.item()


def sft_checkpoint(base: str = "tiny") -> Path:
    return run_path("sft", base)


def sft_provenance(base: str = "tiny", config: SFTConfig = SFTConfig()) -> dict:
    """What makes an SFT model (see `rlhf_core.stages.provenance`): its config, the demonstrations, the base model."""
    return provenance.expected("sft", config, data=["sft.jsonl"],
                               parents={"base model": provenance.identity(SHIPPED.get(base, base))})


def save_sft(model, tokenizer, base: str = "tiny", config: SFTConfig = SFTConfig()) -> Path:
    """Save an SFT model of `base` trained with `config` to runs/sft-{base}, with the provenance.json that lets
    `load_or_train_sft` (and the stages after it) reuse it. Returns the folder."""
    record = sft_provenance(base, config)
    return save_checkpoint(model, tokenizer, sft_checkpoint(base), extra=provenance.writer(record))


def load_or_train_sft(base: str = "tiny", config: SFTConfig | None = None, progress: bool = True):
    """The SFT model for `base`: loaded from runs/sft-{base} if it was made from the same settings, else trained
    (with `config`, or the defaults) and saved there.

    Same settings: the same course version, data/sft.jsonl and base model, and — when `config` is given — the same
    config. With config=None, a model a notebook saved with the student's own settings is reused (the course's
    promise: later notebooks use the model you saved), with a line saying how it differs from the defaults.
    When anything else differs, or the checkpoint records nothing (saved before checkpoints recorded their
    settings), it is retrained, with one line saying why. Retrained rather than raising: runs/ holds only what the
    course rebuilds from code and data, so rebuilding loses nothing that cannot be remade, and a notebook keeps
    running; an interrupted retraining leaves the old checkpoint as it was.
    """
    strict, config = config is not None, config or SFTConfig()
    if provenance.reusable(sft_checkpoint(base), sft_provenance(base, config), strict):
        return load_base(str(sft_checkpoint(base)))
    model, tokenizer = load_base(base)
    train_sft(model, tokenizer, config, progress=progress)
    save_sft(model, tokenizer, base, config)
    return model.eval(), tokenizer
