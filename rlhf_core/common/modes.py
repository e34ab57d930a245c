"""Train/eval mode for a block of code: dropout off inside it, the model's own mode restored after it."""
from __future__ import annotations

from contextlib import contextmanager


@contextmanager
def eval_mode(model):
    """`with eval_mode(model):` runs the block with `model.eval()` and puts back train or eval mode as it was,
    even when the block raises. For measurements inside training loops (validation loss, scoring, sampling)."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)
