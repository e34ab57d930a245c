"""Reading a ranking: K answers to one prompt, the prompt read once for all of them.

The reward model (`RewardModel.score_ranking`) and DPO (`stages.dpo.answer_logprobs`) read rankings of K answers. A
ranking's K answers share their prompt, and attention is causal, so the prompt's keys and values are the same for all
K: compute them once (about half of a ranking's tokens are prompt), then run each answer against them, at positions
that continue the prompt's, in chunks of similar length (as `sequences.score_in_length_chunks`). Layouts and shapes
as in `sequences`; the B·K answers come prompt by prompt, prompt b's in rows b·K … b·K + K − 1.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers.cache_utils import DynamicCache

from .loading import on_model_device
from .sequences import logprobs_from_logits, position_ids_from_mask


def answers_per_prompt(query_ids: torch.Tensor, response_ids: torch.Tensor) -> int:
    """K, for K answers to each of B prompts, prompt b's in rows b·K … b·K + K − 1 of response_ids; or a clear error."""
    k = response_ids.shape[0] // query_ids.shape[0]
    if k * query_ids.shape[0] != response_ids.shape[0]:
        raise ValueError(f"{response_ids.shape[0]} answers for {query_ids.shape[0]} prompts: give the same number "
                         "of answers (K) for every prompt, prompt b's in rows b·K to b·K + K − 1")
    return k


def shared_prompt_chunks(prompt_cache, query_mask: torch.Tensor, response_mask: torch.Tensor, rows: int):
    """The chunks of the read-the-prompt-once layout (`RewardModel.score_ranking`, `shared_prompt_logprobs`).

    A ranking's K answers share their prompt, and attention is causal, so the prompt's keys and values (`prompt_cache`,
    from one pass over the B left-padded prompts) are the same for all K. The B·K answers are sorted by length and cut
    into chunks of `rows`; each chunk yields (chunk (b,) its answers' rows, of (b,) their prompts, width its longest
    answer, cache a DynamicCache of those prompts' keys and values, positions (b, width) the answer tokens' position
    ids, continuing their prompts'). The caller runs the answers against the cache and puts its results back in row
    order with `torch.cat(chunks).argsort()`.
    """
    k = response_mask.shape[0] // query_mask.shape[0]
    keys_values = [(layer.keys, layer.values) for layer in prompt_cache.layers]  # per layer (B, heads, P, head dim)
    prompt_lengths = query_mask.long().sum(1)                                  # (B,)
    lengths = response_mask.long().sum(1)                                      # (B·K,) real answer tokens
    for chunk in lengths.argsort(stable=True).split(rows):                     # short answers first
        of = chunk // k                                                        # (b,) each answer's prompt
        width = max(1, int(lengths[chunk].max()))
        cache = DynamicCache(ddp_cache_data=[(key[of], value[of]) for key, value in keys_values])
        yield chunk, of, width, cache, prompt_lengths[of, None] + torch.arange(width, device=chunk.device)


def shared_prompt_logprobs(model, query_ids, query_mask, response_ids, response_mask, rows: int = 16):
    """`response_logprobs` of K answers to each of B prompts, reading every prompt once -> (B·K, T), 0 on padding.

    query_ids, query_mask (B, P) left-padded; response_ids, response_mask (B·K, T) right-padded, the K answers of
    prompt b in rows b·K … b·K + K − 1 (a ranking, as DPO reads it). The layout of `RewardModel.score_ranking`
    (`shared_prompt_chunks`): the prompt's keys and values are computed once, its last logits predict every answer's
    first token, and the answers run against the cached keys in chunks of `rows` of similar length, each cut to its
    longest answer. The same log-probs and gradients as reading every prompt + answer on its own row, to float
    rounding.
    """
    query_ids, query_mask, response_ids, response_mask = on_model_device(model, query_ids, query_mask, response_ids,
                                                                         response_mask)
    answers_per_prompt(query_ids, response_ids)
    prompt = model(input_ids=query_ids, attention_mask=query_mask.long(), position_ids=position_ids_from_mask(query_mask),
                   use_cache=True, logits_to_keep=1)
    first_logits = prompt.logits[:, -1]                                        # (B, V): predicts each answer's token 0
    chunks, parts = [], []
    for chunk, of, width, cache, positions in shared_prompt_chunks(prompt.cache, query_mask, response_mask, rows):
        tokens = response_ids[chunk, :width]                                   # (b, width)
        logits = first_logits[of].unsqueeze(1)                                 # (b, 1, V)
        if width > 1:  # tokens 1 … width − 1 are predicted at the answer's own positions 0 … width − 2
            out = model(input_ids=tokens[:, :-1],
                        attention_mask=torch.cat([query_mask[of], response_mask[chunk, :width - 1]], 1).long(),
                        position_ids=positions[:, :-1], cache=cache, use_cache=True)
            logits = torch.cat([logits, out.logits], 1)                        # (b, width, V)
        chunks.append(chunk)
        parts.append(F.pad(logprobs_from_logits(logits, tokens), (0, response_ids.shape[1] - width)))  # (b, T)
    logprobs = torch.cat(parts)[torch.cat(chunks).argsort()]                   # back to the input's row order
    return logprobs.masked_fill(~response_mask.bool(), 0.0)
