"""Prompts in, responses out: tokenising, sampling and scoring token sequences.

Every stage of the InstructGPT recipe handles the same kind of batch, a prompt followed by a
response. This module fixes its layout once:

    position    0 ........ P-1 | P ........... P+T-1
    tokens      pad pad  query | response EOS pad pad
    mask        0   0    1   1 | 1   ...  1   0   0

Symbols and shapes used throughout

    B   batch size
    P   prompt length, prompts LEFT-padded so every prompt ends at position P-1
    T   response length, responses RIGHT-padded after their EOS
    L   P + T, the length of prompt and response together
    V   vocabulary size

    query_ids       (B, P) long   prompt tokens, left-padded with pad_token_id
    query_mask      (B, P) bool   True on real prompt tokens
    response_ids    (B, T) long   sampled tokens, pad_token_id after the EOS
    response_mask   (B, T) bool   True on real response tokens INCLUDING the EOS that ended the
                                  response; the True entries are a prefix of each row
    logprobs        (B, T) float  log pi(y_t | x, y_<t) of each response token, 0 on padding

Two details from "The N implementation details of RLHF with PPO" (Huang et al.) are built in:
the pad token is its own token (never EOS), and with left padding the position ids are computed
from the mask, so a prompt gets the same positions however much padding sits in front of it. The
third is temperature: the log-probs are those of the distribution we sampled from, the logits
divided by the sampling temperature.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from functools import partial

import torch
import torch.nn.functional as F
from transformers.cache_utils import DynamicCache, DynamicLayer

from ..common.modes import eval_mode
from .loading import model_device, on_model_device


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position of each token counted over real tokens only: cumsum(mask) - 1, clamped at 0.

    attention_mask (B, L) -> position_ids (B, L) long. Example:
        [[0, 0, 1, 1, 1]] -> [[0, 0, 0, 1, 2]]   # left padding: the prompt starts at position 0
        [[1, 1, 1, 0, 0]] -> [[0, 1, 2, 2, 2]]   # right padding: pads repeat the last position
    Without this, GPT-2 would give a left-padded prompt positions P - len .. P-1, and the same
    prompt would get a different output in a different batch.
    """
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def logprobs_from_logits(logits: torch.Tensor, tokens: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """log softmax(logits / temperature) read at the given tokens.

    logits (B, T, V), tokens (B, T) -> (B, T). Dividing by the temperature here too makes these the
    log-probs of the distribution the tokens were sampled from (Huang et al., implementation details).
    """
    logp = F.log_softmax(logits.float() / temperature, dim=-1)  # (B, T, V)
    return logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)  # (B, T, V) -> (B, T)


def tokenize_prompts(tokenizer, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompt strings -> (query_ids (B, P), query_mask (B, P) bool), LEFT-padded.

    Left padding puts the last prompt token of every row at position P-1, so the model's first
    response token is predicted at the same place for the whole batch. No BOS/EOS is added: the
    prompt is exactly the text the model is given.
    """
    enc = tokenizer(list(prompts), padding=True, padding_side="left", add_special_tokens=False, return_tensors="pt")
    return enc["input_ids"], enc["attention_mask"].bool()


def tokenize_responses(tokenizer, responses: list[str], add_eos: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Response strings -> (response_ids (B, T), response_mask (B, T) bool), RIGHT-padded.

    With add_eos=True each response ends with EOS, the same layout `generate` produces, so a
    written response (a demonstration, a ranked comparison) is scored like a sampled one.
    Prompt and response are tokenised separately: the tokens at the seam are those the policy
    sees when it generates, which tokenising the joined text could merge differently.
    """
    eos = [tokenizer.eos_token_id] if add_eos else []
    rows = [tokenizer(r, add_special_tokens=False)["input_ids"] + eos for r in responses]
    T = max(1, max(len(r) for r in rows))
    response_ids = torch.full((len(rows), T), tokenizer.pad_token_id, dtype=torch.long)
    response_mask = torch.zeros((len(rows), T), dtype=torch.bool)
    for i, r in enumerate(rows):
        response_ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        response_mask[i, : len(r)] = True
    return response_ids, response_mask


def decode_responses(tokenizer, response_ids: torch.Tensor, response_mask: torch.Tensor) -> list[str]:
    """(B, T) response tokens -> B strings, without the padding and without the EOS."""
    texts = []
    for ids, mask in zip(response_ids.tolist(), response_mask.tolist()):
        ids = [t for t, m in zip(ids, mask) if m]
        if ids and ids[-1] == tokenizer.eos_token_id:
            ids = ids[:-1]
        texts.append(tokenizer.decode(ids))
    return texts


def concat_query_response(query_ids, query_mask, response_ids, response_mask) -> tuple[torch.Tensor, torch.Tensor]:
    """Join prompt and response: (B, P) + (B, T) -> input_ids (B, L), attention_mask (B, L) bool."""
    input_ids = torch.cat([query_ids, response_ids], dim=1)  # (B, L)
    attention_mask = torch.cat([query_mask.bool(), response_mask.bool()], dim=1)  # (B, L)
    return input_ids, attention_mask


def pack_query_response(query_ids, query_mask, response_ids, response_mask):
    """Prompt + response with the padding between them squeezed out: a speed-up, not a new layout.

    Returns input_ids (B, L'), attention_mask (B, L') bool and prompt_lengths (B,), where each row is
    its real prompt tokens, then its response, right-padded to L' = the longest prompt + response:

        concat   pad pad  query | response EOS pad        (L = P + T columns)
        packed   query response EOS pad pad pad           (L' <= L columns)

    Position ids come from the mask and padding is masked out of attention, so every real token sees
    the same tokens at the same positions as in the concatenated layout and gets the same output.
    Only the work changes: prompts vary in length (9 to 25 tokens here), so the left padding is a
    third or more of a batch, and a forward/backward pass costs in proportion to B x L.
    Response token t of row b sits at packed position prompt_lengths[b] + t.
    """
    input_ids, attention_mask = concat_query_response(query_ids, query_mask, response_ids, response_mask)
    P = query_ids.shape[1]
    prompt_lengths = query_mask.long().sum(1)  # (B,)
    lengths = prompt_lengths + response_mask.long().sum(1)  # (B,) real tokens per row
    width = max(1, int(lengths.max()))
    shift = P - prompt_lengths  # (B,) left pads: row b's real tokens start at column shift[b]
    source = (torch.arange(width, device=input_ids.device) + shift.unsqueeze(1)).clamp(max=input_ids.shape[1] - 1)
    packed_mask = torch.arange(width, device=input_ids.device) < lengths.unsqueeze(1)  # (B, L')
    packed_ids = input_ids.gather(1, source)  # past a row's length: the padding that followed it, masked out
    return packed_ids, packed_mask, prompt_lengths


def score_in_length_chunks(score, input_ids: torch.Tensor, attention_mask: torch.Tensor, rows: int = 16) -> torch.Tensor:
    """score(input_ids, attention_mask) -> (B,) for RIGHT-padded rows (e.g. `pack_query_response`'s), computed on
    chunks of `rows` rows of similar length, each cut to its own longest row: the same scores, less work.

    A forward/backward pass costs in proportion to B x L, and L is the longest row. A reward model's batch mixes
    short answers with a few long ones (the base model rambles to max_new_tokens), so about half of one
    (B, L) batch is padding. Sorting the rows by length and trimming each chunk's trailing padding leaves the
    real tokens, their positions and their attention unchanged (a right-padded row never attends to what
    follows it). Gradients flow through as usual: the scores come back in the input's row order.
    """
    lengths = attention_mask.long().sum(1)                    # (B,) real tokens per row
    order = lengths.argsort(stable=True)                      # (B,) short rows first
    parts = []
    for chunk in order.split(rows):
        width = max(1, int(lengths[chunk].max()))
        parts.append(score(input_ids[chunk, :width], attention_mask[chunk, :width]))  # (b,)
    return torch.cat(parts)[order.argsort()]                  # back to the input's row order, (B,)


def response_positions(prompt_lengths: torch.Tensor, T: int) -> torch.Tensor:
    """(B,) prompt lengths -> (B, T) packed position of the state before each response token, P_b + t - 1."""
    return prompt_lengths.unsqueeze(1) - 1 + torch.arange(T, device=prompt_lengths.device)


def forward_response(model, query_ids, query_mask, response_ids, response_mask, temperature: float = 1.0):
    """One forward pass over prompt + response -> (logprobs (B, T), response_logits (B, T, V)).

    The logit that predicts response token t sits at the position of the token before it (P + t - 1
    in the concatenated layout). The pass runs on the packed rows (`pack_query_response`), which gives
    the same numbers for less work. `response_logits` are already divided by the temperature: they are
    the logits of the policy pi whose log-probs are returned, ready for an entropy bonus without a
    second pass. logprobs are 0 on padding; response_logits are not masked. Both are on the model's device.
    """
    query_ids, query_mask, response_ids, response_mask = on_model_device(model, query_ids, query_mask, response_ids,
                                                                         response_mask)
    T = response_ids.shape[1]
    input_ids, attention_mask, prompt_lengths = pack_query_response(query_ids, query_mask, response_ids, response_mask)
    first = int(prompt_lengths.min()) - 1  # the earliest position whose logits are needed
    out = model(
        input_ids=input_ids,  # (B, L')
        attention_mask=attention_mask.long(),
        position_ids=position_ids_from_mask(attention_mask),
        use_cache=False,
        logits_to_keep=input_ids.shape[1] - first,  # the LM head runs on positions first .. L'-1 only
    )
    positions = (response_positions(prompt_lengths, T) - first).clamp(max=out.logits.shape[1] - 1)  # (B, T)
    index = positions.unsqueeze(-1).expand(-1, -1, out.logits.shape[-1])  # (B, T, V)
    response_logits = out.logits.gather(1, index).float() / temperature  # (B, L'-first, V) -> (B, T, V)
    logprobs = logprobs_from_logits(response_logits, response_ids)  # (B, T)
    return logprobs.masked_fill(~response_mask.bool(), 0.0), response_logits


def response_logprobs(model, query_ids, query_mask, response_ids, response_mask, temperature: float = 1.0):
    """log pi(y_t | x, y_<t) of every response token under `model`, (B, T), 0 on padding.

    Used for the policy, the frozen SFT reference (the KL penalty of InstructGPT eq. 2) and DPO.
    Keeps the autograd graph; wrap in torch.no_grad() where no gradient is wanted.
    """
    return forward_response(model, query_ids, query_mask, response_ids, response_mask, temperature)[0]


@dataclass
class Rollout:
    """A batch of prompts and the responses sampled for them (shapes in the module docstring).

    `logprobs` are the sampling policy's log-probs of the response tokens at the sampling
    temperature, 0 on padding. Index it like a tensor to take a minibatch: `rollout[idx]`.
    """

    query_ids: torch.Tensor  # (B, P) long, left-padded prompts
    query_mask: torch.Tensor  # (B, P) bool
    response_ids: torch.Tensor  # (B, T) long, pad_token_id after the EOS
    response_mask: torch.Tensor  # (B, T) bool, True on response tokens including the EOS
    logprobs: torch.Tensor  # (B, T) float, log pi_sample(y_t | x, y_<t), 0 on padding

    def __len__(self) -> int:
        return self.query_ids.shape[0]

    def __getitem__(self, idx) -> "Rollout":
        """The rows `idx` (an index tensor, a slice or a bool mask) of every field."""
        return Rollout(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    def sequences(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompt + response: (input_ids (B, L), attention_mask (B, L) bool), e.g. for the reward model."""
        return concat_query_response(self.query_ids, self.query_mask, self.response_ids, self.response_mask)

    def response_lengths(self) -> torch.Tensor:
        """(B,) number of response tokens, EOS included."""
        return self.response_mask.sum(-1)

    def ended_with_eos(self, eos_token_id: int) -> torch.Tensor:
        """(B,) bool: the response ended with EOS (False where it was cut at max_new_tokens)."""
        last = (self.response_lengths() - 1).clamp(min=0)  # (B,) index of the last real token
        last_token = self.response_ids.gather(1, last.unsqueeze(1)).squeeze(1)  # (B,)
        return (last_token == eos_token_id) & (self.response_lengths() > 0)

    def kl_per_response(self, ref_logprobs: torch.Tensor) -> torch.Tensor:
        """(B,) Σ_t (log π − log π_ref) over each response's tokens, with log π the log-probs it was sampled with:
        the k1 estimate of KL(π ‖ π_ref) per response, the quantity InstructGPT's β penalises."""
        return (self.logprobs - ref_logprobs).masked_fill(~self.response_mask, 0.0).sum(1)

    def texts(self, tokenizer) -> list[str]:
        """The response strings, without padding and EOS."""
        return decode_responses(tokenizer, self.response_ids, self.response_mask)


def sample_rows(probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One token per row of probs (B, V), drawn by inverting the row's cumulative distribution -> (B,).

    Row b gets the first token t whose cumulative probability exceeds u_b · (row total), with u_b uniform on
    [0, 1): token t has exactly the chance probs[b, t], and a token of probability 0 is never drawn. This is
    the same distribution as torch.multinomial(probs, 1), from one uniform number per row instead of a random
    number per vocabulary entry: 10-30x faster on a CPU at our sizes (multinomial took 12-15 % of a generation
    step). The sums run in float64 so the last cumulative entry is the row's total to ~1e-16.
    """
    cdf = probs.double().cumsum(dim=-1)                                       # (B, V)
    rand_device = generator.device if generator is not None else cdf.device   # a CPU generator may drive a GPU model
    u = torch.rand(cdf.shape[0], 1, dtype=torch.float64, generator=generator, device=rand_device).to(cdf.device)
    token = torch.searchsorted(cdf, u * cdf[:, -1:], right=True)              # (B, 1): first t with cdf[t] > u·total
    return token.squeeze(1).clamp(max=probs.shape[-1] - 1)                    # u·total rounded up to total: last


def _next_token(logits, temperature, top_k, greedy, generator):
    """Last-position logits (B, V) -> (token (B,), log pi(token) (B,)) at the given temperature.

    The log-prob is always that of the full temperature-scaled distribution (what
    `response_logprobs` recomputes); top-k only restricts which tokens can be drawn.
    """
    scaled = logits.float() / temperature  # (B, V)
    if greedy:
        token = scaled.argmax(-1)  # (B,)
    else:
        if top_k > 0:
            kth = scaled.topk(top_k, dim=-1).values[:, -1:]  # (B, 1) the k-th largest logit
            scaled_k = scaled.masked_fill(scaled < kth, float("-inf"))
        else:
            scaled_k = scaled
        token = sample_rows(F.softmax(scaled_k, dim=-1), generator)  # (B,)
    logprob = F.log_softmax(scaled, dim=-1).gather(-1, token.unsqueeze(-1)).squeeze(-1)  # (B,)
    return token, logprob


class _PreallocatedLayer(DynamicLayer):
    """One layer's keys and values, written into buffers sized once for the whole generation.

    transformers' DynamicLayer grows its keys and values with torch.cat at every step, copying everything
    cached so far: at `small`, a third of a generation's time under the profiler. Here each step writes only its
    new keys into place, and attention reads a view of the buffer's first `length` positions: the same numbers
    in the same order (tested to the bit against the growing cache), 10 % off a 64-answer generation.
    """

    def __init__(self, capacity: int):
        super().__init__()
        self.capacity = capacity

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        B, H, _, D = key_states.shape
        self.device = key_states.device
        self._keys = key_states.new_empty(B, H, self.capacity, D)
        self._values = value_states.new_empty(B, H, self.capacity, D)
        self.length = 0
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        end = self.length + key_states.shape[-2]
        if end > self.capacity:
            raise RuntimeError(f"the preallocated cache holds {self.capacity} positions; this step needs {end}")
        self._keys[:, :, self.length:end].copy_(key_states)
        self._values[:, :, self.length:end].copy_(value_states)
        self.length = end
        self.keys, self.values = self._keys[:, :, :end], self._values[:, :, :end]  # (B, H, end, D) views
        return self.keys, self.values

    def _refuse(self, *args, **kwargs):
        # DynamicLayer's versions would replace `keys` but leave the buffers behind, and the next update would
        # silently write past what they hold: refuse instead of returning wrong keys.
        raise NotImplementedError("PreallocatedCache serves generate()'s single left-to-right pass; to crop, reorder "
                                  "or select rows of a cache use transformers' DynamicCache")

    crop = reorder_cache = batch_repeat_interleave = batch_select_indices = _refuse


class PreallocatedCache(DynamicCache):
    """A DynamicCache whose layers hold at most `capacity` positions, allocated at the first step (see
    `_PreallocatedLayer`): for a generation whose length is known in advance, prompt + max_new_tokens."""

    def __init__(self, capacity: int):
        super().__init__()
        self.layer_class_to_replicate = partial(_PreallocatedLayer, capacity)


@torch.no_grad()
def generate(
    model,
    tokenizer,
    prompts_or_query,
    max_new_tokens: int = 32,
    temperature: float = 1.0,
    top_k: int = 0,
    generator: torch.Generator | None = None,
    greedy: bool = False,
    use_cache: bool = True,
) -> Rollout:
    """Sample one response per prompt -> Rollout, with the KV cache, all rows in step.

    prompts_or_query   a list of prompt strings, or a (query_ids (B, P), query_mask (B, P)) pair
    max_new_tokens     longest response; a row that reaches it has no EOS (see ended_with_eos)
    temperature        sample from softmax(logits / temperature); the logprobs use the same
    top_k              if > 0, sample only among the k most likely tokens (logprobs stay those of
                       the full temperature-scaled distribution)
    generator          a torch.Generator, for reproducible samples
    greedy             take the argmax instead of sampling
    use_cache          False recomputes the whole sequence every step (slow; a reference for tests)

    Each row stops at its EOS: the EOS is part of the response (mask True) and everything after
    it is pad_token_id with mask False. The loop ends when every row has finished, so T is the
    longest response in the batch. The model runs in eval mode (no dropout); its training flag is
    restored afterwards.
    """
    if temperature <= 0:
        raise ValueError("temperature must be > 0 (use greedy=True for argmax decoding)")
    if max_new_tokens < 1:
        raise ValueError("max_new_tokens must be at least 1")
    if isinstance(prompts_or_query, (list, tuple)) and prompts_or_query and isinstance(prompts_or_query[0], str):
        query_ids, query_mask = tokenize_prompts(tokenizer, prompts_or_query)
    else:
        query_ids, query_mask = prompts_or_query
    device = model_device(model)
    query_ids, query_mask = query_ids.to(device), query_mask.to(device).bool()
    B = query_ids.shape[0]
    eos_id, pad_id = tokenizer.eos_token_id, tokenizer.pad_token_id

    with eval_mode(model):
        tokens, masks, logprobs = [], [], []  # one (B,) tensor per step
        finished = torch.zeros(B, dtype=torch.bool, device=device)
        attention_mask = query_mask.long()  # (B, P + steps so far)
        input_ids = query_ids  # what the next forward pass reads: the prompt, then one token
        cache = PreallocatedCache(query_ids.shape[1] + max_new_tokens) if use_cache else None
        for _ in range(max_new_tokens):
            if use_cache:
                position_ids = position_ids_from_mask(attention_mask)[:, -input_ids.shape[1] :]
            else:  # reference path: the whole sequence so far, every step
                input_ids = torch.cat([query_ids] + [t.unsqueeze(1) for t in tokens], dim=1)  # (B, P + step)
                position_ids = position_ids_from_mask(attention_mask)
            out = model(
                input_ids=input_ids,
                attention_mask=attention_mask,  # (B, P + step): cached keys and new ones
                position_ids=position_ids,
                cache=cache,
                use_cache=use_cache,
                logits_to_keep=1,  # only the last position predicts the next token
            )
            cache = out.cache if use_cache else None
            token, logprob = _next_token(out.logits[:, -1], temperature, top_k, greedy, generator)  # (B,), (B,)

            alive = ~finished  # rows still writing: this token (EOS included) is part of the response
            tokens.append(torch.where(alive, token, torch.full_like(token, pad_id)))
            masks.append(alive)
            logprobs.append(torch.where(alive, logprob, torch.zeros_like(logprob)))
            finished = finished | (token == eos_id)

            attention_mask = torch.cat([attention_mask, alive.long().unsqueeze(1)], dim=1)  # (B, P + step + 1)
            input_ids = tokens[-1].unsqueeze(1)  # (B, 1): with the cache only the new token is fed
            if bool(finished.all()):  # every row has its EOS: stop early
                break

    return Rollout(
        query_ids=query_ids,
        query_mask=query_mask,
        response_ids=torch.stack(tokens, dim=1),  # (B, T)
        response_mask=torch.stack(masks, dim=1),  # (B, T)
        logprobs=torch.stack(logprobs, dim=1),  # (B, T)
    )


def sample_responses(model, tokenizer, prompts: list[str], max_new_tokens: int = 32, temperature: float = 1.0,
                     seed: int = 0, batch_size: int = 512, greedy: bool = False) -> list[str]:
    """One sampled response per prompt (the course's evaluation decoding: the policy's own distribution)."""
    generator = torch.Generator().manual_seed(seed)
    responses: list[str] = []
    for i in range(0, len(prompts), batch_size):
        rollout = generate(model, tokenizer, list(prompts[i:i + batch_size]), max_new_tokens=max_new_tokens,
                           temperature=temperature, generator=generator, greedy=greedy)
        responses.extend(rollout.texts(tokenizer))
    return responses


def token_stream(tokenizer, texts: list[str]) -> torch.Tensor:
    """All documents as one 1-D tensor of token ids, each document followed by EOS."""
    ids: list[int] = []
    for encoded in tokenizer(texts, add_special_tokens=False)["input_ids"]:
        ids.extend(encoded)
        ids.append(tokenizer.eos_token_id)
    return torch.tensor(ids, dtype=torch.long)


def random_windows(stream: torch.Tensor, batch_size: int, seq_len: int, generator: torch.Generator) -> torch.Tensor:
    starts = torch.randint(0, len(stream) - seq_len, (batch_size,), generator=generator)
    return torch.stack([stream[s:s + seq_len] for s in starts.tolist()])  # (B, seq_len)


@torch.no_grad()
def stream_loss(model, stream: torch.Tensor, seq_len: int = 128, batch_size: int = 32) -> float:
    """Mean next-token loss over consecutive windows covering the whole stream (exp() of it is perplexity)."""
    with eval_mode(model):
        n = (len(stream) - 1) // seq_len
        inputs = stream[: n * seq_len].view(n, seq_len)
        total, count = 0.0, 0
        for batch in inputs.split(batch_size):
            batch = batch.to(model_device(model))
            out = model(input_ids=batch, attention_mask=torch.ones_like(batch), labels=batch)
            total += out.loss.item() * batch.numel()
            count += batch.numel()
    return total / count
