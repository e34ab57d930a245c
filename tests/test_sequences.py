"""Tests for rlhf_core.models.sequences: log-probs, padding, sampling with the KV cache, EOS handling."""

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, GPT2Config
from transformers.cache_utils import DynamicCache

from rlhf_core.models.loading import build_tokenizer

from rlhf_core.models import rankings, sequences
from rlhf_core.models.sequences import (PreallocatedCache, Rollout, decode_responses, forward_response, generate,
                                        logprobs_from_logits, pack_query_response, position_ids_from_mask,
                                        response_logprobs, sample_rows, score_in_length_chunks, tokenize_prompts,
                                        tokenize_responses)

SENTENCES = [
    "Human: What colour is a banana?\nAssistant: A banana is yellow.",
    "Human: Name a fruit.\nAssistant: An apple is a fruit.",
    "Human: How many legs does a cat have?\nAssistant: A cat has four legs.",
    "Human: Say hello.\nAssistant: Hello there!",
    "Human: What is the sky like today?\nAssistant: The sky is blue and clear.",
    "Human: Tell me a short story.\nAssistant: Once upon a time a dog found a bone.",
] * 4
PROMPTS = [
    "Human: What colour is a banana?\nAssistant:",
    "Human: Hi\nAssistant:",
    "Human: Tell me a short story about a cat.\nAssistant:",
    "Human: Say hello.\nAssistant:",
]


@pytest.fixture(scope="module")
def tokenizer():
    """A byte-level BPE trained on a few sentences, the course's recipe: pad is its own token, eos = bos."""
    return build_tokenizer(SENTENCES, vocab_size=400)


def tiny_model(tokenizer, seed=0):
    torch.manual_seed(seed)
    cfg = GPT2Config(
        n_layer=2, n_embd=64, n_head=4, vocab_size=len(tokenizer), n_positions=128,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    return AutoModelForCausalLM.from_config(cfg, attn_implementation="sdpa").eval()


@pytest.fixture(scope="module")
def model(tokenizer):
    return tiny_model(tokenizer)


def eos_biased_model(tokenizer, eos_bias):
    """A model whose EOS logit gets +eos_bias (GPT-2's LM head has no bias, so a hook adds one)."""
    model = tiny_model(tokenizer, seed=1)
    bias = torch.zeros(len(tokenizer))
    bias[tokenizer.eos_token_id] = eos_bias
    model.lm_head.register_forward_hook(lambda module, inputs, logits: logits + bias)
    return model


def test_position_ids_from_mask():
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 0, 0], [0, 1, 1, 1, 0]])
    expected = torch.tensor([[0, 0, 0, 1, 2], [0, 1, 2, 2, 2], [0, 0, 1, 2, 2]])
    assert torch.equal(position_ids_from_mask(mask), expected)
    assert torch.equal(position_ids_from_mask(mask.bool()), expected)


def test_pack_query_response_squeezes_out_the_padding_between_prompt_and_response():
    """Against a loop: each packed row is its real prompt tokens, then its real response tokens, then padding."""
    torch.manual_seed(0)
    for _ in range(20):
        B, P, T = 5, 6, 4
        prompt_lengths = torch.randint(1, P + 1, (B,))
        response_lengths = torch.randint(0, T + 1, (B,))
        query_mask = torch.arange(P) >= P - prompt_lengths.unsqueeze(1)  # left-padded
        response_mask = torch.arange(T) < response_lengths.unsqueeze(1)  # right-padded
        query_ids = torch.randint(2, 50, (B, P)).masked_fill(~query_mask, 1)
        response_ids = torch.randint(2, 50, (B, T)).masked_fill(~response_mask, 1)
        ids, mask, lengths = pack_query_response(query_ids, query_mask, response_ids, response_mask)
        width = int((prompt_lengths + response_lengths).max())
        assert ids.shape == mask.shape == (B, width) and mask.dtype == torch.bool
        assert torch.equal(lengths, prompt_lengths)
        for row in range(B):
            real = query_ids[row][query_mask[row]].tolist() + response_ids[row][response_mask[row]].tolist()
            assert ids[row, : len(real)].tolist() == real
            assert mask[row].tolist() == [True] * len(real) + [False] * (width - len(real))


def test_packing_keeps_every_real_tokens_output(model, tokenizer):
    """The packed pass is a speed-up only: log-probs and logits equal the concatenated layout's."""
    query_ids, query_mask = tokenize_prompts(tokenizer, PROMPTS)
    response_ids, response_mask = tokenize_responses(tokenizer, ["Yes.", "A cat has four legs.", "Hi", "Hello!"])
    P, T = query_ids.shape[1], response_ids.shape[1]
    input_ids = torch.cat([query_ids, response_ids], 1)
    attention_mask = torch.cat([query_mask, response_mask], 1)
    assert pack_query_response(query_ids, query_mask, response_ids, response_mask)[0].shape[1] < P + T
    logits = model(input_ids=input_ids, attention_mask=attention_mask.long(),
                   position_ids=position_ids_from_mask(attention_mask)).logits[:, P - 1 : P + T - 1]  # (B, T, V)
    logprobs, response_logits = forward_response(model, query_ids, query_mask, response_ids, response_mask)
    torch.testing.assert_close(response_logits[response_mask], logits[response_mask], atol=1e-5, rtol=1e-5)
    expected = logprobs_from_logits(logits, response_ids).masked_fill(~response_mask, 0)
    torch.testing.assert_close(logprobs, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("rows", [1, 3, 64])
def test_scoring_in_length_chunks_equals_scoring_each_row_alone(tokenizer, rows):
    """The chunked pass is a speed-up only: every score and every gradient equals a loop that scores each row
    by itself, cut to its own length (the obviously right way), for any chunk size and a shuffled row order."""
    from rlhf_core.models.heads import RewardModel

    reward_model = RewardModel.from_causal_lm(tiny_model(tokenizer, seed=2)).eval()  # no dropout: deterministic
    generator = torch.Generator().manual_seed(0)
    B, L = 7, 12
    lengths = torch.randint(1, L + 1, (B,), generator=generator)
    lengths[3] = L                                            # one row fills the batch: trimming must keep it whole
    input_ids = torch.randint(2, len(tokenizer), (B, L), generator=generator)
    attention_mask = torch.arange(L) < lengths.unsqueeze(1)   # (B, L) right-padded
    input_ids = input_ids.masked_fill(~attention_mask, tokenizer.pad_token_id)

    scores = score_in_length_chunks(reward_model, input_ids, attention_mask, rows)                     # (B,)
    weights = torch.randn(B, generator=generator)                  # a loss that tells the rows apart
    grads = torch.autograd.grad((weights * scores).sum(), reward_model.head.weight)[0]

    alone = torch.stack([reward_model(input_ids[b:b + 1, :lengths[b]], attention_mask[b:b + 1, :lengths[b]])[0]
                         for b in range(B)])
    expected_grads = torch.autograd.grad((weights * alone).sum(), reward_model.head.weight)[0]
    torch.testing.assert_close(scores, alone, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(grads, expected_grads, atol=1e-5, rtol=1e-5)


def test_tokenize_prompts_left_pads(tokenizer):
    query_ids, query_mask = tokenize_prompts(tokenizer, PROMPTS)
    assert query_mask.dtype == torch.bool and query_ids.shape == query_mask.shape
    assert query_mask[:, -1].all()  # every prompt ends at the last column
    assert (query_ids[~query_mask] == tokenizer.pad_token_id).all()
    for row, prompt in enumerate(PROMPTS):  # no BOS/EOS added: the prompt is exactly its text
        assert query_ids[row][query_mask[row]].tolist() == tokenizer(prompt, add_special_tokens=False)["input_ids"]


def test_tokenize_and_decode_responses_round_trip(tokenizer):
    texts = ["A banana is yellow.", "Hi", "Once upon a time a dog found a bone."]
    response_ids, response_mask = tokenize_responses(tokenizer, texts)
    lengths = response_mask.sum(-1)
    assert (response_ids[torch.arange(3), lengths - 1] == tokenizer.eos_token_id).all()  # EOS appended
    assert (response_ids[~response_mask] == tokenizer.pad_token_id).all()
    assert decode_responses(tokenizer, response_ids, response_mask) == texts


def test_logprobs_agree_with_model_cross_entropy(model, tokenizer):
    """Unpadded rows: the mean of -logprobs over response tokens is the model's own `labels=` loss."""
    torch.manual_seed(0)
    B, P, T = 3, 5, 7
    query_ids = torch.randint(2, len(tokenizer), (B, P))
    response_ids = torch.randint(0, len(tokenizer), (B, T))
    query_mask, response_mask = torch.ones(B, P, dtype=torch.bool), torch.ones(B, T, dtype=torch.bool)
    logprobs = response_logprobs(model, query_ids, query_mask, response_ids, response_mask)
    assert logprobs.shape == (B, T)
    for row in range(B):  # one row at a time so the reference is a plain mean over its tokens
        input_ids = torch.cat([query_ids[row], response_ids[row]]).unsqueeze(0)
        labels = input_ids.clone()
        labels[:, :P] = -100  # score only the response
        loss = model(input_ids=input_ids, labels=labels).loss
        torch.testing.assert_close(-logprobs[row].mean(), loss, atol=1e-5, rtol=1e-5)


def test_left_padding_does_not_change_logprobs(model, tokenizer):
    responses = ["A banana is yellow.", "Hello", "Once upon a time a dog found a bone.", "Hi there!"]
    query_ids, query_mask = tokenize_prompts(tokenizer, PROMPTS)
    response_ids, response_mask = tokenize_responses(tokenizer, responses)
    batch = response_logprobs(model, query_ids, query_mask, response_ids, response_mask)
    assert (batch[~response_mask] == 0).all()  # padding contributes nothing
    for row in range(len(PROMPTS)):
        q, qm = tokenize_prompts(tokenizer, PROMPTS[row : row + 1])  # no padding at all
        r, rm = tokenize_responses(tokenizer, responses[row : row + 1])
        alone = response_logprobs(model, q, qm, r, rm)[0]
        torch.testing.assert_close(batch[row, : rm.sum()], alone, atol=1e-5, rtol=1e-5)


def test_shared_prompt_logprobs_read_each_prompt_once_and_match_each_answer_alone(tokenizer):
    """The reference: every prompt + answer joined, unpadded, run alone through the model, and log softmax read at
    each answer token in a loop. K = 3 answers a prompt of mixed lengths (an empty one is its EOS alone); rows=2
    splits them into several chunks. The log-probs and their gradients must agree."""
    model = tiny_model(tokenizer, seed=3)
    answers = [" A banana is yellow.", "", " Yellow, and a cat has four legs.", " Hello", " Hello there!", " Hi",
               " Once", " A dog found a bone.", "", " Four", " A cat has four legs.", " Hello"]
    query_ids, query_mask = tokenize_prompts(tokenizer, PROMPTS)
    response_ids, response_mask = tokenize_responses(tokenizer, answers)
    weights = torch.randn(response_ids.shape, generator=torch.Generator().manual_seed(0))  # every token its own weight

    model.zero_grad()
    shared = rankings.shared_prompt_logprobs(model, query_ids, query_mask, response_ids, response_mask, rows=2)
    (weights * shared).sum().backward()
    shared_grads = [p.grad.clone() for p in model.parameters()]
    assert shared.shape == response_ids.shape and (shared[~response_mask] == 0).all()

    model.zero_grad()
    total = 0.0
    for row in range(len(answers)):
        prompt = query_ids[row // 3][query_mask[row // 3]]
        answer = response_ids[row][response_mask[row]]
        logits = model(input_ids=torch.cat([prompt, answer])[None]).logits[0]           # (P + n, V)
        for t in range(len(answer)):  # answer token t is predicted at the position before it
            logp = F.log_softmax(logits[len(prompt) + t - 1], -1)[answer[t]]
            torch.testing.assert_close(shared[row, t].detach(), logp.detach(), atol=1e-5, rtol=1e-5)
            total = total + weights[row, t] * logp
    total.backward()
    for p, g in zip(model.parameters(), shared_grads):
        torch.testing.assert_close(g, p.grad, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="same number of answers"):
        rankings.shared_prompt_logprobs(model, query_ids, query_mask, response_ids[:11], response_mask[:11])


def test_temperature_scales_logits():
    torch.manual_seed(0)
    logits, tokens = torch.randn(2, 3, 11), torch.randint(0, 11, (2, 3))
    for temperature in (0.5, 1.0, 2.0):
        expected = F.log_softmax(logits / temperature, -1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
        torch.testing.assert_close(logprobs_from_logits(logits, tokens, temperature), expected)
    # a higher temperature flattens the distribution: the top token's log-prob drops
    top = logits.argmax(-1)
    assert (logprobs_from_logits(logits, top, 2.0) < logprobs_from_logits(logits, top, 1.0)).all()


def test_forward_response_returns_scaled_logits(model, tokenizer):
    query_ids, query_mask = tokenize_prompts(tokenizer, PROMPTS[:2])
    response_ids, response_mask = tokenize_responses(tokenizer, ["Yes.", "A cat has four legs."])
    logprobs_1, logits_1 = forward_response(model, query_ids, query_mask, response_ids, response_mask)
    logprobs_2, logits_2 = forward_response(model, query_ids, query_mask, response_ids, response_mask, temperature=2.0)
    assert logits_1.shape == (*response_ids.shape, len(tokenizer))
    torch.testing.assert_close(logits_2, logits_1 / 2)
    expected = logprobs_from_logits(logits_1, response_ids, 2.0).masked_fill(~response_mask, 0)
    torch.testing.assert_close(logprobs_2, expected)


def reference_sample_rows(probs, uniforms):
    """Row by row: walk the tokens, adding up probabilities, until the running sum passes u * (row total)."""
    tokens = []
    for row, u in zip(probs.double().tolist(), uniforms.tolist()):
        target, running, chosen = u * sum(row), 0.0, len(row) - 1
        for t, p in enumerate(row):
            running += p
            if running > target:
                chosen = t
                break
        tokens.append(chosen)
    return torch.tensor(tokens)


def test_sample_rows_inverts_each_rows_cumulative_distribution():
    torch.manual_seed(0)
    probs = F.softmax(3 * torch.randn(200, 50), dim=-1)
    probs[:40, :25] = 0.0  # rows with zeroed tokens, as top-k leaves them (not renormalised: the total is < 1)
    probs[40, :] = 0.0
    probs[40, -1] = 1.0    # all mass on the last token
    probs[41, :] = 0.0
    probs[41, 0] = 1.0     # all mass on the first token
    tokens = sample_rows(probs, torch.Generator().manual_seed(4))
    uniforms = torch.rand(200, dtype=torch.float64, generator=torch.Generator().manual_seed(4))  # the same draws
    assert torch.equal(tokens, reference_sample_rows(probs, uniforms))
    assert tokens[40] == 49 and tokens[41] == 0 and (tokens[:40] >= 25).all()


def test_sample_rows_draws_each_token_with_its_probability():
    probs = torch.tensor([[0.5, 0.0, 0.3, 0.15, 0.05, 0.0]])
    n = 40_000
    tokens = sample_rows(probs.expand(n, -1), torch.Generator().manual_seed(0))
    freq = torch.bincount(tokens, minlength=probs.shape[1]).double() / n
    assert freq[1] == 0 and freq[5] == 0, "a token of probability 0 is never drawn"
    # each frequency within 4 standard errors of its probability (a wrong inversion, e.g. u compared with
    # the cumulative sum one token late, moves them by 0.05-0.5)
    stderr = (probs[0] * (1 - probs[0]) / n).sqrt().double()
    assert ((freq - probs[0].double()).abs() <= 4 * stderr + 1e-12).all(), freq


def test_sampling_with_cache_equals_without(model, tokenizer):
    for temperature, top_k in [(1.0, 0), (0.7, 20)]:
        with_cache = generate(model, tokenizer, PROMPTS, max_new_tokens=12, temperature=temperature, top_k=top_k,
                              generator=torch.Generator().manual_seed(3), use_cache=True)
        without = generate(model, tokenizer, PROMPTS, max_new_tokens=12, temperature=temperature, top_k=top_k,
                           generator=torch.Generator().manual_seed(3), use_cache=False)
        assert torch.equal(with_cache.response_ids, without.response_ids)
        assert torch.equal(with_cache.response_mask, without.response_mask)
        torch.testing.assert_close(with_cache.logprobs, without.logprobs, atol=1e-5, rtol=1e-5)


def test_the_preallocated_cache_samples_what_the_growing_one_does_to_the_bit(model, tokenizer, monkeypatch):
    """generate() writes each step's keys into buffers sized once (PreallocatedCache); transformers' DynamicCache
    grows them with torch.cat. Attention then reads a view of the buffer instead of a fresh tensor: the same
    values in the same order, so the samples and their log-probs must agree exactly, not just closely."""
    prompts = PROMPTS * 3  # prompts of different lengths: left padding in the cache too
    for temperature in (1.0, 0.7):
        preallocated = generate(model, tokenizer, prompts, max_new_tokens=16, temperature=temperature,
                                generator=torch.Generator().manual_seed(5))
        with monkeypatch.context() as patch:
            patch.setattr(sequences, "PreallocatedCache", lambda capacity: DynamicCache())
            growing = generate(model, tokenizer, prompts, max_new_tokens=16, temperature=temperature,
                               generator=torch.Generator().manual_seed(5))
        assert torch.equal(preallocated.response_ids, growing.response_ids)
        assert torch.equal(preallocated.logprobs, growing.logprobs)


def test_the_preallocated_cache_refuses_to_run_past_its_capacity():
    cache = PreallocatedCache(capacity=5)
    keys = torch.randn(2, 3, 4, 8)  # (B, H, positions, D)
    got_keys, got_values = cache.update(keys, -keys, 0)
    assert torch.equal(got_keys, keys) and torch.equal(got_values, -keys) and cache.get_seq_length() == 4
    got_keys, _ = cache.update(keys[:, :, :1] + 1, keys[:, :, :1], 0)
    assert got_keys.shape == (2, 3, 5, 8) and torch.equal(got_keys[:, :, :4], keys)
    assert torch.equal(got_keys[:, :, 4:], keys[:, :, :1] + 1)
    with pytest.raises(RuntimeError, match="holds 5 positions"):
        cache.update(keys[:, :, :1], keys[:, :, :1], 0)
    for operation, argument in (("crop", -1), ("reorder_cache", torch.tensor([1, 0])),
                                ("batch_select_indices", torch.tensor([0])), ("batch_repeat_interleave", 2)):
        with pytest.raises(NotImplementedError, match="DynamicCache"):  # not wrong keys, silently
            getattr(cache, operation)(argument)


def test_sampling_is_reproducible_with_a_generator(model, tokenizer):
    a = generate(model, tokenizer, PROMPTS, max_new_tokens=10, generator=torch.Generator().manual_seed(7))
    b = generate(model, tokenizer, PROMPTS, max_new_tokens=10, generator=torch.Generator().manual_seed(7))
    c = generate(model, tokenizer, PROMPTS, max_new_tokens=10, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a.response_ids, b.response_ids) and torch.equal(a.logprobs, b.logprobs)
    assert not torch.equal(a.response_ids, c.response_ids)


def test_eos_ends_each_row(tokenizer):
    model = eos_biased_model(tokenizer, eos_bias=4.0)  # P(EOS) about 0.1 a step: lengths vary
    prompts = PROMPTS * 4
    rollout = generate(model, tokenizer, prompts, max_new_tokens=40, generator=torch.Generator().manual_seed(0))
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    lengths = rollout.response_lengths()
    assert rollout.response_ids.shape[1] == lengths.max()  # trimmed to the longest response
    assert lengths.min() < lengths.max()  # the rows did finish at different steps
    ended = rollout.ended_with_eos(eos)
    assert ended.sum() >= len(prompts) - 2  # nearly all rows met an EOS within 40 tokens
    for ids, mask, logprobs, n, has_eos in zip(rollout.response_ids, rollout.response_mask, rollout.logprobs,
                                               lengths, ended):
        assert mask[:n].all() and not mask[n:].any()  # the mask is a prefix
        assert (ids[:n - 1] != eos).all()  # nothing was generated past an EOS
        assert has_eos == (ids[n - 1] == eos)  # the mask includes the EOS ...
        assert (ids[n:] == pad).all() and (logprobs[n:] == 0).all()  # ... and nothing after it
        assert (logprobs[:n] < 0).all()


def test_all_rows_ending_stops_the_loop_early(tokenizer):
    model = eos_biased_model(tokenizer, eos_bias=100.0)  # EOS is certain on the first step
    rollout = generate(model, tokenizer, PROMPTS, max_new_tokens=32, generator=torch.Generator().manual_seed(0))
    assert rollout.response_ids.shape == (len(PROMPTS), 1)
    assert (rollout.response_ids == tokenizer.eos_token_id).all() and rollout.response_mask.all()
    assert rollout.texts(tokenizer) == [""] * len(PROMPTS)


@pytest.mark.parametrize("temperature, top_k", [(1.0, 0), (0.7, 0), (1.3, 10)])
def test_returned_logprobs_equal_a_forward_pass(tokenizer, temperature, top_k):
    model = eos_biased_model(tokenizer, eos_bias=3.0)  # some padding in the batch
    rollout = generate(model, tokenizer, PROMPTS, max_new_tokens=16, temperature=temperature, top_k=top_k,
                       generator=torch.Generator().manual_seed(0))
    recomputed = response_logprobs(model, rollout.query_ids, rollout.query_mask, rollout.response_ids,
                                   rollout.response_mask, temperature=temperature)
    torch.testing.assert_close(rollout.logprobs, recomputed, atol=1e-5, rtol=1e-5)


def test_greedy_takes_the_argmax(model, tokenizer):
    rollout = generate(model, tokenizer, PROMPTS, max_new_tokens=8, greedy=True)
    again = generate(model, tokenizer, PROMPTS, max_new_tokens=8, greedy=True, generator=torch.Generator().manual_seed(5))
    assert torch.equal(rollout.response_ids, again.response_ids)
    _, logits = forward_response(model, rollout.query_ids, rollout.query_mask, rollout.response_ids, rollout.response_mask)
    mask = rollout.response_mask
    assert torch.equal(logits.argmax(-1)[mask], rollout.response_ids[mask])


def test_batch_rows_equal_running_each_prompt_alone(tokenizer):
    """Left-padding correctness: greedy responses in a batch match each prompt run alone."""
    model = eos_biased_model(tokenizer, eos_bias=3.0)
    batch = generate(model, tokenizer, PROMPTS, max_new_tokens=12, greedy=True)
    for row, prompt in enumerate(PROMPTS):
        alone = generate(model, tokenizer, [prompt], max_new_tokens=12, greedy=True)
        n = alone.response_ids.shape[1]
        assert batch.response_mask[row].sum() == n
        assert torch.equal(batch.response_ids[row, :n], alone.response_ids[0])
        torch.testing.assert_close(batch.logprobs[row, :n], alone.logprobs[0], atol=1e-5, rtol=1e-5)


def test_generate_accepts_token_ids_and_restores_training_mode(model, tokenizer):
    query = tokenize_prompts(tokenizer, PROMPTS)
    model.train()
    try:
        from_ids = generate(model, tokenizer, query, max_new_tokens=6, generator=torch.Generator().manual_seed(1))
        assert model.training  # the flag is restored ...
    finally:
        model.eval()
    from_text = generate(model, tokenizer, PROMPTS, max_new_tokens=6, generator=torch.Generator().manual_seed(1))
    assert torch.equal(from_ids.response_ids, from_text.response_ids)  # ... and dropout was off inside
    assert not from_ids.logprobs.requires_grad


def test_kl_per_response_sums_the_log_ratio_over_real_tokens_only(model, tokenizer):
    rollout = generate(model, tokenizer, PROMPTS, max_new_tokens=6, generator=torch.Generator().manual_seed(3))
    ref = torch.randn(rollout.logprobs.shape, generator=torch.Generator().manual_seed(4))
    ref = ref.masked_fill(~rollout.response_mask, 1e9)  # garbage at the padding must not count
    expected = [sum(lp - r for lp, r, m in zip(lps, refs, ms) if m)
                for lps, refs, ms in zip(rollout.logprobs.tolist(), ref.tolist(), rollout.response_mask.tolist())]
    torch.testing.assert_close(rollout.kl_per_response(ref), torch.tensor(expected), rtol=1e-5, atol=1e-5)


def test_rollout_indexing_and_sequences(model, tokenizer):
    rollout = generate(model, tokenizer, PROMPTS, max_new_tokens=5, generator=torch.Generator().manual_seed(2))
    assert isinstance(rollout, Rollout) and len(rollout) == len(PROMPTS)
    part = rollout[torch.tensor([2, 0])]
    assert len(part) == 2 and torch.equal(part.response_ids[1], rollout.response_ids[0])
    input_ids, attention_mask = rollout.sequences()
    P = rollout.query_ids.shape[1]
    assert torch.equal(input_ids[:, P:], rollout.response_ids) and torch.equal(attention_mask[:, :P], rollout.query_mask)
