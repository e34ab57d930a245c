"""What every training stage does after computing its loss: one clipped optimizer step, and the log of it."""
from __future__ import annotations

import torch


def record_step(log: dict, step: int, metrics: dict[str, float], callback=None, bar=None) -> None:
    """After a training step: append each metric (rounded to 4 decimals) and the step to `log`, call
    callback(step, metrics), advance the progress bar and show the loss on it."""
    for name, value in metrics.items():
        log[name].append(round(value, 4))
    log["step"].append(step)
    if callback is not None:
        callback(step, metrics)
    if bar is not None:
        bar.update(1)
        bar.set_postfix(loss=f"{next(iter(metrics.values())):.3f}")


def gradient_step(loss, model, optimizer, where: str, fix: str, max_grad_norm: float = 1.0) -> None:
    """One optimizer step on `loss`, with gradient clipping; a non-finite loss stops training with advice.

    where: names the stage and step in the error ("SFT step 12"); fix: what to change ("lower SFTConfig.lr").
    """
    if not torch.isfinite(loss):
        raise FloatingPointError(f"{where}: the loss became {loss.item()}; {fix}")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()
