"""Property-based tests (Hypothesis) for the inputs nobody lists: the labeler on arbitrary text, the losses on
random shapes, ragged and empty masks and extreme values, and `read_jsonl` on arbitrary bytes.

Each property says what must hold for *every* input: a score in [0, 10] or a ValueError, a finite loss that
padding cannot change, a ValueError that names the bad line. Hypothesis searches for a counterexample and
shrinks it to the smallest one it can find.
"""
import json
import math
import re
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from rlhf_core import SimulatedLabeler, read_jsonl
from rlhf_core.world.labeler import DECLINE_MARKERS
from rlhf_core.losses import (compute_gae, dpo_loss, kl_per_token, masked_mean, ppo_policy_loss, ranking_loss,
                              rlhf_rewards, sft_loss, value_loss, whiten)
from rlhf_core.world.corpus import FILLER_CLOSERS, FILLER_OPENERS
from rlhf_core.world.tasks import (CAPITALS, COLOUR_WORDS, INSULTS, OPPOSITES, REFUSAL_OPENERS, SOUNDS, all_tasks,
                                   format_prompt)

FAST = settings(max_examples=60, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# --------------------------------------------------------------------------------------------------
# The labeler: a score in [0, 10] for any answer, a ValueError for a prompt outside the world
# --------------------------------------------------------------------------------------------------

TASKS = all_tasks()
WORLD_WORDS = sorted({*COLOUR_WORDS, *SOUNDS, *SOUNDS.values(), *CAPITALS, *CAPITALS.values(), *OPPOSITES,
                      *INSULTS, *DECLINE_MARKERS, *FILLER_OPENERS, *FILLER_CLOSERS, *REFUSAL_OPENERS,
                      "Human:", "Assistant:", "\nHuman:", "\nAssistant:", "not", "is", "a", "the", "."})
any_text = st.text(st.characters(exclude_categories=()), max_size=60)  # any code point: controls, surrogates
answers = st.one_of(
    any_text,
    st.lists(st.one_of(st.sampled_from(WORLD_WORDS), any_text), max_size=12).map(" ".join),
    st.builds(lambda piece, n: piece * n, st.text(max_size=12), st.integers(0, 3000)),  # very long
    st.builds(lambda task, junk: " " + task.answer + junk, st.sampled_from(TASKS), any_text),
)
world_prompts = st.sampled_from(TASKS).map(lambda task: format_prompt(task.instruction))


@FAST
@given(world_prompts, answers)
@example(format_prompt("What colour is a banana?"), "")
@example(format_prompt("What colour is a banana?"), " A banana is yellow.\nHuman: And a lemon?\nAssistant: Yellow.")
@example(format_prompt("What colour is a banana?"), "\x00\x1b[31m\ud800")
def test_the_labeler_scores_any_answer_in_0_to_10(prompt, answer):
    score = SimulatedLabeler().score(prompt, answer)
    assert 0.0 <= score <= 10.0 and math.isfinite(score)


@FAST
@given(st.one_of(any_text, world_prompts.map(lambda p: p + "x"), st.builds(format_prompt, any_text)), answers)
def test_a_prompt_outside_the_world_is_a_value_error_and_nothing_else(prompt, answer):
    try:
        score = SimulatedLabeler().score(prompt, answer)
    except ValueError as error:
        assert "not an instruction of the mini world" in str(error)
    else:
        assert 0.0 <= score <= 10.0


@FAST
@given(world_prompts, st.lists(answers, min_size=2, max_size=5), st.integers(0, 2**32 - 1))
def test_a_ranking_of_any_answers_is_a_permutation(prompt, responses, seed):
    assert sorted(SimulatedLabeler(seed=seed).rank(prompt, responses)) == list(range(len(responses)))


# --------------------------------------------------------------------------------------------------
# The losses: finite on any valid input, a ValueError on an invalid one, and padding never leaks
# --------------------------------------------------------------------------------------------------

EXTREME = 1e6  # rewards, advantages, values, scores up to ±1e6 (float32)
garbage = st.floats(allow_nan=True, allow_infinity=True, width=32)  # whatever padding holds


def tensor(draw, shape, low=-EXTREME, high=EXTREME):
    values = draw(st.lists(st.floats(low, high, width=32), min_size=math.prod(shape), max_size=math.prod(shape)))
    return torch.tensor(values, dtype=torch.float32).reshape(shape)


@st.composite
def masks(draw, prefix: bool = False, min_columns: int = 1):
    """A (B, T) bool mask: arbitrary (empty rows too), or each row a prefix of any length (0 included)."""
    b, t = draw(st.integers(1, 4)), draw(st.integers(min_columns, 6))
    if prefix:
        lengths = torch.tensor(draw(st.lists(st.integers(0, t), min_size=b, max_size=b)))
        return torch.arange(t)[None, :] < lengths[:, None]
    return torch.tensor(draw(st.lists(st.lists(st.booleans(), min_size=t, max_size=t), min_size=b, max_size=b)))


def fill_padding(draw, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """x with other values (NaN and ±inf included) where mask is False."""
    noise = torch.tensor(draw(st.lists(garbage, min_size=x.numel(), max_size=x.numel())), dtype=x.dtype)
    return torch.where(mask, x, noise.reshape(x.shape))


def same(a, b) -> bool:
    return torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b


def finite(*tensors) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in tensors)


@FAST
@given(st.data())
def test_masked_mean_and_whiten_are_finite_and_blind_to_padding(data):
    mask = data.draw(masks())
    x = tensor(data.draw, mask.shape)
    x_other = fill_padding(data.draw, x, mask)
    if mask.sum() == 0:
        with pytest.raises(ValueError, match="no entries"):
            masked_mean(x, mask)
    else:
        assert finite(masked_mean(x, mask)) and same(masked_mean(x, mask), masked_mean(x_other, mask))
    if mask.sum() < 2:
        with pytest.raises(ValueError):
            whiten(x, mask)
    else:
        white = whiten(x, mask)
        assert finite(white) and same(white, whiten(x_other, mask)) and not white[~mask].any()


@FAST
@given(st.data())
def test_ranking_loss_is_finite_and_blind_to_padding(data):
    mask = data.draw(masks(min_columns=2))
    rewards = tensor(data.draw, mask.shape)
    if (mask.sum(1) < 2).any():
        with pytest.raises(ValueError, match="fewer than two"):
            ranking_loss(rewards, mask)
        return
    loss = ranking_loss(rewards, mask)
    assert finite(loss) and loss >= 0
    assert same(loss, ranking_loss(fill_padding(data.draw, rewards, mask), mask))


@FAST
@given(st.data(), st.floats(0, 10), st.floats(0, 1), st.floats(0, 1))
def test_rlhf_rewards_and_gae_are_finite_and_blind_to_padding(data, kl_coef, gamma, lam):
    mask = data.draw(masks(prefix=True))
    scores = tensor(data.draw, mask.shape[:1])
    logprobs, ref_logprobs = tensor(data.draw, mask.shape, -60, 0), tensor(data.draw, mask.shape, -60, 0)
    values = tensor(data.draw, mask.shape)
    if not mask[:, 0].all():  # an empty response has no last token to get the score
        with pytest.raises(ValueError, match="no valid token"):
            rlhf_rewards(scores, logprobs, ref_logprobs, mask, kl_coef)
        rewards = tensor(data.draw, mask.shape)
    else:
        rewards = rlhf_rewards(scores, logprobs, ref_logprobs, mask, kl_coef)
        again = rlhf_rewards(scores, fill_padding(data.draw, logprobs, mask),
                             fill_padding(data.draw, ref_logprobs, mask), mask, kl_coef)
        assert finite(rewards) and same(rewards, again)
    advantages, returns = compute_gae(rewards, values, mask, gamma, lam)
    other = compute_gae(fill_padding(data.draw, rewards, mask), fill_padding(data.draw, values, mask), mask, gamma, lam)
    assert finite(advantages, returns) and same(advantages, other[0]) and same(returns, other[1])


@FAST
@given(st.data(), st.floats(0.01, 1))
def test_ppo_losses_are_finite_and_padding_gets_no_gradient(data, clip_range):
    mask = data.draw(masks())
    old_logprobs, advantages = tensor(data.draw, mask.shape, -60, 0), tensor(data.draw, mask.shape)
    old_values, returns = tensor(data.draw, mask.shape), tensor(data.draw, mask.shape)
    logprobs = tensor(data.draw, mask.shape, -60, 0).requires_grad_()
    values = tensor(data.draw, mask.shape).requires_grad_()
    if mask.sum() == 0:
        with pytest.raises(ValueError):
            ppo_policy_loss(logprobs, old_logprobs, advantages, mask, clip_range)
        with pytest.raises(ValueError):
            value_loss(values, old_values, returns, mask, clip_range)
        return
    pg_loss, pg_stats = ppo_policy_loss(logprobs, old_logprobs, advantages, mask, clip_range)
    vf_loss, vf_stats = value_loss(values, old_values, returns, mask, clip_range)
    (pg_loss + vf_loss).backward()
    assert finite(pg_loss, vf_loss, logprobs.grad, values.grad)
    assert all(math.isfinite(v) for v in [*pg_stats.values(), *vf_stats.values()])
    assert not logprobs.grad[~mask].any() and not values.grad[~mask].any()
    pad = lambda x: fill_padding(data.draw, x.detach(), mask)  # noqa: E731
    assert same(pg_loss, ppo_policy_loss(pad(logprobs), pad(old_logprobs), pad(advantages), mask, clip_range)[0])
    assert same(vf_loss, value_loss(pad(values), pad(old_values), pad(returns), mask, clip_range)[0])


@FAST
@given(st.data())
def test_sft_loss_is_finite_and_blind_to_everything_but_its_targets(data):
    mask = data.draw(masks())                                   # (B, L): response tokens
    vocab = data.draw(st.integers(2, 6))
    logits = tensor(data.draw, (*mask.shape, vocab), -1e4, 1e4)  # (B, L, V)
    input_ids = torch.tensor(data.draw(st.lists(st.integers(0, vocab - 1), min_size=mask.numel(),
                                                max_size=mask.numel()))).reshape(mask.shape)
    if mask[:, 0].any() or not mask[:, 1:].any():
        with pytest.raises(ValueError):
            sft_loss(logits, input_ids, mask)
        return
    loss = sft_loss(logits, input_ids, mask)
    predicts_target = torch.cat([mask[:, 1:], torch.zeros_like(mask[:, :1])], dim=1)  # logit t predicts token t+1
    other_logits = fill_padding(data.draw, logits, predicts_target[:, :, None].expand_as(logits))
    other_ids = torch.where(mask, input_ids, (input_ids + 1) % vocab)
    assert finite(loss) and loss >= 0 and same(loss, sft_loss(other_logits, other_ids, mask))


@FAST
@given(st.data(), st.floats(0.01, 10))
def test_kl_estimators_and_dpo_are_finite_on_any_log_probs(data, beta):
    n = data.draw(st.integers(1, 8))
    logprobs, ref_logprobs = tensor(data.draw, (n,), -60, 0), tensor(data.draw, (n,), -60, 0)
    for estimator in ("k1", "k2", "k3"):
        kl = kl_per_token(logprobs, ref_logprobs, estimator)
        assert finite(kl) and (estimator == "k1" or (kl >= 0).all())
    logps = [tensor(data.draw, (n,), -1e4, 0) for _ in range(4)]
    loss, chosen, rejected = dpo_loss(*logps, beta=beta)
    assert finite(loss, chosen, rejected) and loss >= 0


# --------------------------------------------------------------------------------------------------
# read_jsonl: any bytes give records or a ValueError that names the bad line
# --------------------------------------------------------------------------------------------------

SCRATCH = Path(tempfile.mkdtemp(prefix="rlhf-properties-"))
jsonl_bytes = st.one_of(
    st.binary(max_size=200),
    st.lists(st.one_of(st.binary(max_size=30),
                       st.just(b'{"prompt": "Human: Hi\\nAssistant:"}'), st.just(b"{}"), st.just(b"[1]"),
                       st.just(b""), st.just(b"\r"), st.just(b"\xef\xbb\xbf{}"), st.just(b"\xff\xfe"),
                       st.just(b"[" * 100_000)),
             max_size=6).map(b"\n".join),
)


def blank(line: bytes) -> bool:
    try:
        return not line.decode("utf-8").strip()
    except UnicodeDecodeError:
        return False


def bad_line(line: bytes) -> bool:
    """An independent judge of one line: not UTF-8, not JSON, not an object, or without a text "prompt"."""
    try:
        record = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return True
    return not isinstance(record, dict) or not isinstance(record.get("prompt"), str)


@FAST
@given(jsonl_bytes)
@example(b'{"prompt": "ok"}\n\xff\n')
@example(b'{"prompt": "ok"}\n' + b"[" * 100_000)
def test_read_jsonl_gives_records_or_a_value_error_naming_the_line(content):
    path = SCRATCH / "split.jsonl"
    path.write_bytes(content)
    lines = content.split(b"\n")
    try:
        records = read_jsonl(path, required=("prompt",))
    except ValueError as error:
        named = re.search(r", line (\d+):", str(error))
        if named is None:
            assert "holds no records" in str(error) and all(blank(line) for line in lines)
            return
        number = int(named.group(1))
        assert bad_line(lines[number - 1]), f"line {number} is named but is fine: {lines[number - 1]!r}"
        assert not any(bad_line(line) for line in lines[:number - 1] if not blank(line)), "an earlier line is bad"
    else:
        good = [line for line in lines if not blank(line)]
        assert records and len(records) == len(good) and not any(bad_line(line) for line in good)
