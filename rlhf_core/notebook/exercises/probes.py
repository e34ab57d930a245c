"""What every exercise check is built from: random inputs, running the student's code safely, comparing.

``random_batch`` makes the RL stage's inputs: float64, a ragged ``mask``, large numbers at the padded positions so
that a leak shows. ``_call`` runs the student's function on copies of its inputs and turns an exception into a
diagnosis that names the input (a ``NotImplementedError`` into "not implemented yet"); ``_tensor`` and ``_loss``
check what comes back; ``_close`` compares with the reference at RTOL, ATOL; ``_fail`` raises the ``AssertionError``
whose message is the diagnosis. ``_masked_loss_probes`` holds the probes shared by every loss that is a masked mean
over tokens: padding that leaks in, a sum, a mean over all B·T entries, a mean of per-row means.
"""

from __future__ import annotations

from typing import Callable, NoReturn

import torch

RTOL, ATOL = 1e-5, 1e-6   # inputs are float64, so only a different formula can exceed these


def random_batch(seed: int, B: int = 4, T: int = 7, garbage: int = 0) -> dict[str, torch.Tensor]:
    """Random float64 inputs of the RL stage, with a ragged prefix ``mask`` (B, T).

    Row 0 is full (its last valid token is the last column), row 1 has a single token, the other
    rows random lengths. Every (B, T) tensor holds large numbers (±10..30) at its padded positions,
    so a leak shows; another ``garbage`` gives other padding numbers around the same valid entries.
    ``old_logprobs`` and ``old_values`` differ from ``logprobs`` and ``values`` by about 0.3, so
    about half the tokens fall outside a clip range of 0.2.
    """
    gen = torch.Generator().manual_seed(seed)
    junk = torch.Generator().manual_seed(100_003 * (garbage + 1) + seed)
    lengths = torch.randint(1, T + 1, (B,), generator=gen)
    lengths[0] = T
    if B > 1:
        lengths[1] = 1
    mask = torch.arange(T)[None, :] < lengths[:, None]                              # (B, T)

    def randn() -> torch.Tensor:
        return torch.randn(B, T, generator=gen, dtype=torch.float64)

    def padded(x: torch.Tensor) -> torch.Tensor:                                    # garbage at padding
        sign = torch.where(torch.rand(B, T, generator=junk) < 0.5, -1.0, 1.0).double()
        return torch.where(mask, x, sign * (10 + 20 * torch.rand(B, T, generator=junk, dtype=torch.float64)))

    logprobs = -0.05 - 3 * torch.rand(B, T, generator=gen, dtype=torch.float64)
    values = randn()
    batch = dict(mask=mask, scores=2 * torch.randn(B, generator=gen, dtype=torch.float64))
    batch["logprobs"] = padded(logprobs)
    batch["ref_logprobs"] = padded(logprobs + 0.5 * randn())
    batch["old_logprobs"] = padded(logprobs + 0.3 * randn())
    batch["advantages"] = padded(randn())
    batch["rewards"] = padded(randn())
    batch["values"] = padded(values)
    batch["old_values"] = padded(values + 0.3 * randn())
    batch["returns"] = padded(randn())
    batch["x"] = padded(2 + 3 * randn())
    return batch


def _fail(message: str) -> NoReturn:
    raise AssertionError(message)


def _fresh(arg):
    """A copy the student's code may modify in place (tensors that require grad are passed as they are)."""
    if isinstance(arg, torch.Tensor) and not arg.requires_grad:
        return arg.clone()
    return arg


def _call(fn: Callable, name: str, case: str, *args, **kwargs):
    """Run the student's ``fn`` on copies of the inputs; turn an exception into a diagnosis that names the input."""
    return _call_on_originals(fn, name, case, *map(_fresh, args), **{key: _fresh(value) for key, value in kwargs.items()})


def _call_on_originals(fn: Callable, name: str, case: str, *args, **kwargs):
    """``_call`` without the copies: for a probe that looks at whether ``fn`` changes its inputs."""
    try:
        return fn(*args, **kwargs)
    except NotImplementedError as error:
        detail = f" ({error})" if str(error) else ""
        raise AssertionError(f"{name} is not implemented yet{detail}: replace the "
                             "`raise NotImplementedError` with your code.") from error
    except Exception as error:
        raise AssertionError(f"{name} raised {type(error).__name__} on {case}: {error}") from error


def _tensor(out, name: str, shape: tuple, what: str = "its result") -> torch.Tensor:
    """The student's output as a detached float64 tensor of the expected shape."""
    if isinstance(out, (int, float)):
        out = torch.tensor(float(out))
    if not isinstance(out, torch.Tensor):
        _fail(f"{name} must return a tensor for {what}, got {type(out).__name__}.")
    if tuple(shape) == () and out.numel() == 1:
        out = out.reshape(())
    if tuple(out.shape) != tuple(shape):
        _fail(f"{name} returned {what} with shape {tuple(out.shape)}; expected {tuple(shape)}.")
    return out.detach().to(torch.float64)


def _loss(out, name: str) -> torch.Tensor:
    """The loss of a ``(loss, stats)`` pair (or a bare loss), still attached to its graph."""
    loss = out[0] if isinstance(out, (tuple, list)) else out
    if not isinstance(loss, torch.Tensor):
        _fail(f"{name} must return the loss as a tensor (to call .backward() on), got {type(loss).__name__}.")
    if loss.numel() != 1:
        _fail(f"{name} must return a scalar loss (a mean), got shape {tuple(loss.shape)}.")
    return loss.reshape(())


def _close(got, expected, rtol: float = RTOL, atol: float = ATOL) -> bool:
    got, expected = torch.as_tensor(got, dtype=torch.float64), torch.as_tensor(expected, dtype=torch.float64)
    return got.shape == expected.shape and bool(torch.allclose(got, expected, rtol=rtol, atol=atol))


def _diff(got, expected) -> str:
    difference = (torch.as_tensor(got, dtype=torch.float64) - torch.as_tensor(expected, dtype=torch.float64)).abs()
    return f"max abs diff {difference.max().item():.3g}"


def _rounded(x: torch.Tensor) -> list:
    """A small tensor as nested lists of short numbers, for messages."""
    return [_rounded(row) for row in x] if x.dim() > 1 else [round(v, 4) + 0.0 for v in x.tolist()]


def _rows(batch: dict, rows: slice) -> dict:
    return {key: value[rows] for key, value in batch.items()}


def _masked_loss_probes(run: Callable, reference: Callable, name: str, seed: int) -> None:
    """Probes shared by the losses that average a per-token term over valid tokens.

    ``run(batch)`` and ``reference(batch)`` return the student's and the reference's loss (float64).
    """
    batch = random_batch(seed)
    got, expected = run(batch), reference(batch)
    n_valid, n_all = int(batch["mask"].sum()), batch["mask"].numel()
    if not _close(run(random_batch(seed, garbage=1)), got):
        _fail(f"padding leaks into {name}: the loss changes when only the padded positions change. "
              "Average over valid tokens only (a masked mean; set padding to 0 with torch.where).")
    if _close(got, expected * n_valid / n_all) and not _close(expected, expected * n_valid / n_all):
        _fail(f"{name} divides by all B·T entries, so padding counts in the mean: divide by the number "
              "of valid tokens, mask.sum().")
    if _close(got, expected * n_valid):
        _fail(f"{name} is a sum where it must be a mean: divide by the number of valid tokens.")
    per_row = torch.stack([reference(_rows(batch, slice(b, b + 1))) for b in range(batch["mask"].shape[0])]).mean()
    if _close(got, per_row) and not _close(expected, per_row):
        _fail(f"{name} averages each row first and then the rows: the mean is over all valid tokens of "
              "the batch (one masked mean), so long responses weigh more.")
