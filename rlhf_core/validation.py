"""Input checks for the equations of `rlhf_core.losses`: shapes, masks, NaN, clip ranges and groups.

Each raises ``ValueError`` naming the problem and the fix, so that the loss functions themselves read like the
equations. Masks may be bool or 0/1 integer/float tensors; padded entries are set to 0 before any arithmetic.
"""
from __future__ import annotations

import torch


def rows(bad: torch.Tensor, limit: int = 5) -> list[int]:
    return bad.nonzero().flatten()[:limit].tolist()


def check_shape(name: str, tensor: torch.Tensor, shape, expected: str) -> None:
    if tuple(tensor.shape) != tuple(shape):
        raise ValueError(f"{name} has shape {tuple(tensor.shape)} but must match {expected} = "
                         f"{tuple(shape)}; check that both come from the same batch.")


def check_no_nan(name: str, values: torch.Tensor) -> None:
    if values.is_floating_point() and torch.isnan(values).any():
        raise ValueError(f"{name} contains NaN on valid entries; it would poison the mean. "
                         "Find where it came from (an overflow, log of 0, a division by 0).")


def check_clip_range(clip_range: float) -> None:
    if clip_range <= 0:
        raise ValueError(f"clip_range = {clip_range}; pass ε > 0 (0.2 is the usual value).")


def as_bool_mask(mask: torch.Tensor, shape, name: str = "mask") -> torch.Tensor:
    """Check the mask's shape and values and return it as bool."""
    check_shape(name, mask, shape, "the data's shape")
    if mask.dtype != torch.bool:
        if not ((mask == 0) | (mask == 1)).all():
            raise ValueError(f"{name} must be bool or hold only 0 and 1 (1 = real token).")
        mask = mask.bool()
    return mask


def as_prefix_mask(mask: torch.Tensor, shape, need_one: bool = False) -> torch.Tensor:
    """A (B, T) bool mask whose True entries form a prefix of every row (optionally non-empty)."""
    if len(shape) != 2:
        raise ValueError(f"expected (B, T) tensors, got shape {tuple(shape)}.")
    mask = as_bool_mask(mask, shape)
    holes = mask[:, 1:] & ~mask[:, :-1]                 # a True right after a False
    if holes.any():
        raise ValueError(f"mask rows {rows(holes.any(1))} are not a prefix: responses must start at "
                         "position 0 and be padded after their end (right padding), with no gaps.")
    if need_one and not mask[:, 0].all():
        raise ValueError(f"mask rows {rows(~mask[:, 0])} have no valid token; drop empty responses "
                         "(they have no last token to receive the score).")
    return mask


def masked_inputs(mask: torch.Tensor, **tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Check each tensor has the mask's shape and no NaN on valid entries; return them with
    padding set to 0, so whatever sits there reaches neither a result nor a gradient."""
    out = []
    for name, tensor in tensors.items():
        check_shape(name, tensor, mask.shape, "mask.shape")
        check_no_nan(name, tensor[mask])
        out.append(torch.where(mask, tensor, 0.0))
    return tuple(out)


def grouped(returns: torch.Tensor, k: int, name: str) -> torch.Tensor:
    """(B,) returns, k answers per prompt in consecutive rows -> (B/k, k), after checking k and the shape."""
    if returns.dim() != 1:
        raise ValueError(f"{name}: returns must be (B,), one return per answer; got shape {tuple(returns.shape)}. "
                         "Sum per-token rewards over the response first.")
    if not isinstance(k, int) or k < 2:
        raise ValueError(f"{name}: k = {k!r}; a baseline from the other answers needs k >= 2 answers per prompt.")
    if returns.shape[0] % k:
        raise ValueError(f"{name}: {returns.shape[0]} returns are not a whole number of groups of k = {k}; "
                         "sample k answers for every prompt, in consecutive rows.")
    check_no_nan("returns", returns)
    return returns.view(-1, k)
