"""Scalar heads on a GPT-2 body: the reward model r(x, y) and the value function V(s).

Both are the transformer of a GPT-2 (`GPT2Model`, no LM head) with one linear layer that maps the
hidden state h of each position to a number, w . h + b:

    RewardModel   r(x, y)   (B,)    read at the LAST real token of prompt + response (InstructGPT §3.5)
    ValueModel    V(s_t)    (B, L)  at every position; `response_values` aligns it with the tokens

Symbols and shapes (as in `rlhf_core.models.sequences`): B batch, P prompt length (left-padded), T response
length (right-padded after EOS), L = P + T, H hidden size (n_embd).

InstructGPT builds the reward model from the SFT model with its unembedding layer removed (§3.5),
sets a bias so the labeler demonstrations score 0 on average before RL (the loss only sees score
differences, so the level is free), and initialises the value function from the reward model (App. C.4).
`RewardModel.from_causal_lm`, `normalise_reward` and `ValueModel.from_reward_model` do those three.

Checkpoints are a directory: the body as transformers writes it (config.json, model.safetensors) and
the head in head.safetensors. No pickle anywhere.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn
from transformers import AutoModel

from ..common.files import atomic_folder
from ..common.modes import eval_mode
from ..world.labeler import SimulatedLabeler
from .loading import default_device, on_model_device
from .rankings import answers_per_prompt, shared_prompt_chunks
from .sequences import (pack_query_response, position_ids_from_mask, response_positions, tokenize_prompts,
                        tokenize_responses)

HEAD_FILE = "head.safetensors"
BACKBONE_FILES = ("config.json", "model.safetensors")
# Files save_pretrained may find in a directory it is allowed to replace.
_CHECKPOINT_FILES = {*BACKBONE_FILES, HEAD_FILE, "generation_config.json", "provenance.json",
                     "comparisons.jsonl"}  # the rankings a reward model learned from (reward.save_reward_model)


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, L) mask -> (B,) index of the last True of each row: the EOS of a finished response.

    With a left-padded prompt and a right-padded response the real tokens are one block in the
    middle of the row, so neither "the last column" nor "mask.sum() - 1" would find its end.
    """
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)  # (L,)
    return (attention_mask.long() * positions).argmax(-1)  # (B, L) -> (B,)


class ScalarHeadModel(nn.Module):
    """GPT-2 body + linear head: per-position scalars w . h_i + b, shape (B, L).

    The shared base of RewardModel and ValueModel; it owns the body, the head and checkpoints.
    """

    # Where a missing checkpoint comes from; the subclasses say it for their stage.
    how_to_make = "Train the model first and save it with .save_pretrained(directory)."

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone  # GPT2Model: tokens -> hidden states (B, L, H)
        self.head = nn.Linear(backbone.config.n_embd, 1)  # (B, L, H) -> (B, L, 1)
        # A fresh head starts small so early scores are near 0: N(0, 1/sqrt(H + 1)) as in OpenAI's
        # lm-human-preferences (Huang et al., implementation details), zero bias.
        nn.init.normal_(self.head.weight, std=1 / math.sqrt(backbone.config.n_embd + 1))
        nn.init.zeros_(self.head.bias)

    @property
    def config(self):
        return self.backbone.config

    @classmethod
    def from_causal_lm(cls, lm: nn.Module):
        """A fresh head on a copy of a GPT2LMHeadModel's transformer (its LM head is dropped)."""
        backbone = AutoModel.from_config(lm.config, attn_implementation="sdpa")  # a GPT2Model
        backbone.load_state_dict(lm.transformer.state_dict())  # copy, so the LM stays untouched
        param = next(lm.parameters())
        return cls(backbone).to(device=param.device, dtype=param.dtype)

    def per_position(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """input_ids (B, L), attention_mask (B, L) -> one scalar per position (B, L).

        Position ids come from the mask, so left padding does not shift the prompt. Inputs move to the model's device.
        """
        input_ids, attention_mask = on_model_device(self, input_ids, attention_mask)
        hidden = self.backbone(
            input_ids=input_ids,
            attention_mask=attention_mask.long(),
            position_ids=position_ids_from_mask(attention_mask),
            use_cache=False,
        ).last_hidden_state  # (B, L) -> (B, L, H)
        return self.head(hidden).squeeze(-1).float()  # (B, L, H) -> (B, L)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.per_position(input_ids, attention_mask)

    # ---- checkpoints --------------------------------------------------------------------------

    def save_pretrained(self, directory: str | os.PathLike, extra=None) -> None:
        """Write config.json + model.safetensors (the body) and head.safetensors (head and bias).

        Written with `common.files.atomic_folder`, so an interrupted save leaves the previous checkpoint as it was.
        `extra(folder)`, if given, writes more files into the new checkpoint before the swap (its provenance.json).
        """
        directory = Path(directory)
        if directory.exists() and not set(os.listdir(directory)) <= _CHECKPOINT_FILES:
            raise ValueError(f"{directory} holds other files than a checkpoint; refusing to replace it.")
        with atomic_folder(directory) as folder:
            self.backbone.save_pretrained(folder)
            head_state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()
                          if not k.startswith("backbone.")}  # head.weight, head.bias (+ bias)
            save_file(head_state, str(folder / HEAD_FILE), metadata={"class": type(self).__name__})
            if extra is not None:
                extra(folder)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike):
        """Load a checkpoint written by `save_pretrained`; returned in eval mode, like transformers.

        Raises FileNotFoundError naming the missing file and how to make it, and ValueError if
        the directory holds another kind of model.
        """
        directory = Path(directory)
        for name in (*BACKBONE_FILES, HEAD_FILE):
            if not (directory / name).is_file():
                raise FileNotFoundError(
                    f"No {cls.__name__} checkpoint at '{directory}': missing '{directory / name}'. {cls.how_to_make}"
                )
        with safe_open(str(directory / HEAD_FILE), framework="pt") as f:
            saved_class = (f.metadata() or {}).get("class")
            head_state = {k: f.get_tensor(k) for k in f.keys()}
        if saved_class != cls.__name__:
            raise ValueError(f"'{directory}' holds a {saved_class}, not a {cls.__name__}.")
        model = cls(AutoModel.from_pretrained(directory, attn_implementation="sdpa"))
        missing, unexpected = model.load_state_dict(head_state, strict=False)
        missing = [k for k in missing if not k.startswith("backbone.")]
        if missing or unexpected:
            raise ValueError(f"{directory / HEAD_FILE}: missing {missing}, unexpected {unexpected}.")
        return model.to(default_device()).eval()


class RewardModel(ScalarHeadModel):
    """r(x, y) = w . h_last + b - bias: a scalar score per sequence, shape (B,).

    h_last is the hidden state of the last real token (the EOS of a finished response), the only
    position that has seen the whole prompt and response. `bias` is a buffer, not trained: it is
    set after training so that demonstrations score 0 on average (InstructGPT §3.5).
    """

    how_to_make = ("Train a reward model first: run the reward-model notebook (03) or "
                   "`python -m rlhf_core.pipeline`, which save it with .save_pretrained(directory).")

    def __init__(self, backbone: nn.Module):
        super().__init__(backbone)
        self.register_buffer("bias", torch.zeros(()))  # () subtracted from every score

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """input_ids (B, L), attention_mask (B, L) -> scores (B,), on the model's device."""
        input_ids, attention_mask = on_model_device(self, input_ids, attention_mask)
        per_position = self.per_position(input_ids, attention_mask)  # (B, L)
        last = last_token_index(attention_mask)  # (B,)
        score = per_position.gather(1, last.unsqueeze(1)).squeeze(1)  # (B, L) -> (B,)
        return score - self.bias

    def score_ranking(self, query_ids: torch.Tensor, query_mask: torch.Tensor, response_ids: torch.Tensor,
                      response_mask: torch.Tensor, rows: int = 16) -> torch.Tensor:
        """Scores of K answers to each of B prompts, reading every prompt once -> (B·K,), as forward would give.

        query_ids, query_mask (B, P) left-padded; response_ids, response_mask (B·K, T) right-padded, the K answers
        of prompt b in rows b·K … b·K + K − 1. A ranking's K answers share their prompt, and attention is causal,
        so the prompt's keys and values are the same for all K: compute them once (about half of a ranking's
        tokens are prompt), then run each answer against its prompt's cached keys, at positions that continue
        the prompt's. The answers go in chunks of `rows` of similar length, each cut to its longest answer
        (as `score_in_length_chunks`). Same scores and gradients as forward on the joined rows, to float rounding;
        a training step of the course's reward model takes about 0.8 of the time.
        """
        query_ids, query_mask, response_ids, response_mask = on_model_device(self, query_ids, query_mask,
                                                                                 response_ids, response_mask)
        answers_per_prompt(query_ids, response_ids)
        prompt = self.backbone(input_ids=query_ids, attention_mask=query_mask.long(),
                               position_ids=position_ids_from_mask(query_mask), use_cache=True).cache
        lengths = response_mask.long().sum(1)                                      # (B·K,) real answer tokens
        chunks, parts = [], []
        for chunk, of, width, cache, positions in shared_prompt_chunks(prompt, query_mask, response_mask, rows):
            hidden = self.backbone(
                input_ids=response_ids[chunk, :width],                                            # (b, width)
                attention_mask=torch.cat([query_mask[of], response_mask[chunk, :width]], 1).long(),  # (b, P + width)
                position_ids=positions, cache=cache, use_cache=True,
            ).last_hidden_state                                                    # (b, width, H)
            last = hidden[torch.arange(len(chunk)), (lengths[chunk] - 1).clamp(min=0)]  # (b, H) the last real token
            chunks.append(chunk)
            parts.append(self.head(last).squeeze(-1).float() - self.bias)          # (b,)
        return torch.cat(parts)[torch.cat(chunks).argsort()]                       # back to the input's row order

    @torch.no_grad()
    def set_bias_from(self, scores: torch.Tensor) -> None:
        """Shift the bias so that sequences which scored `scores` (B,) under this model score 0 on average.

        `scores` are this model's outputs, the current bias already subtracted, hence +=.
        """
        self.bias += scores.float().mean().to(self.bias)


class ValueModel(ScalarHeadModel):
    """V(s_i) = w . h_i + b at every position, shape (B, L): the PPO critic.

    V at position i estimates the return from the state "prompt and response up to token i".
    """

    how_to_make = ("Value models are trained with the policy: run the PPO notebook or "
                   "`python -m rlhf_core.pipeline`, or start one with ValueModel.from_reward_model(rm).")

    @classmethod
    def from_reward_model(cls, reward_model: RewardModel) -> "ValueModel":
        """A copy of the reward model as the initial value function (InstructGPT App. C.4).

        The RM's bias is folded into the head's bias, so V starts out predicting the normalised
        reward at every position.
        """
        param = next(reward_model.parameters())
        value = cls(AutoModel.from_config(reward_model.config, attn_implementation="sdpa"))
        value = value.to(device=param.device, dtype=param.dtype)  # before the bias arithmetic below
        value.backbone.load_state_dict(reward_model.backbone.state_dict())
        value.head.load_state_dict(reward_model.head.state_dict())
        with torch.no_grad():
            value.head.bias -= reward_model.bias
        return value

    def response_values(self, query_ids, query_mask, response_ids, response_mask) -> torch.Tensor:
        """Values aligned with the response tokens, (B, T), 0 on padding.

        Value t belongs to the state before response token t is chosen, the hidden state at
        position P + t - 1: the same position whose logits give log pi(y_t), so values, log-probs
        and rewards line up index for index in GAE.
        The pass runs on the packed rows (`pack_query_response`): the same values, less work.
        """
        query_ids, query_mask, response_ids, response_mask = on_model_device(self, query_ids, query_mask,
                                                                                 response_ids, response_mask)
        T = response_ids.shape[1]
        input_ids, attention_mask, prompt_lengths = pack_query_response(query_ids, query_mask, response_ids,
                                                                        response_mask)
        per_position = self.per_position(input_ids, attention_mask)  # (B, L')
        positions = response_positions(prompt_lengths, T).clamp(max=per_position.shape[1] - 1)  # (B, T)
        values = per_position.gather(1, positions)  # (B, L') -> (B, T)
        return values.masked_fill(~response_mask.bool(), 0.0)


class LabelerReward(nn.Module):
    """The gold labeler behind the reward model's interface: a perfect reward, for experiments.

    `forward(input_ids, attention_mask)` decodes each prompt + response and returns the labeler's gold score,
    (gold − 10) / scale, so that a demonstration (gold 10) scores 0 like the normalised reward model. PPO against
    it shows what the algorithm can do when the reward is right — the ceiling the learned reward model is
    measured against. Prompts must be single-turn (as the PPO prompts are): the response starts after the first
    "\nAssistant:".
    """

    def __init__(self, tokenizer, labeler=None, scale: float = 2.5):
        super().__init__()

        self.tokenizer, self.labeler, self.scale = tokenizer, labeler or SimulatedLabeler(), scale

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        special = {self.tokenizer.eos_token_id, self.tokenizer.pad_token_id}
        scores = []
        for ids, mask in zip(input_ids.tolist(), attention_mask.bool().tolist()):
            text = self.tokenizer.decode([t for t, real in zip(ids, mask) if real and t not in special])
            prompt, found, response = text.partition("\nAssistant:")
            if not found:
                raise ValueError(f"LabelerReward needs a chat prompt ending in 'Assistant:', got {text[:80]!r}")
            scores.append((self.labeler.score(prompt + found, response) - 10.0) / self.scale)
        return torch.tensor(scores, device=input_ids.device)


@torch.no_grad()
def score_texts(reward_model: RewardModel, tokenizer, prompts: list[str], responses: list[str],
                batch_size: int = 32) -> torch.Tensor:
    """Reward of written (prompt, response) pairs -> (N,) float tensor on the CPU.

    Tokenised exactly as `generate` lays out a sample: the prompt alone, left-padded, then the
    response alone with EOS appended, right-padded (see `tokenize_responses` for why separately).
    Runs in eval mode; the model's training flag is restored afterwards.
    """
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
    scores = []
    with eval_mode(reward_model):
        for i in range(0, len(prompts), batch_size):
            query_ids, query_mask = tokenize_prompts(tokenizer, prompts[i : i + batch_size])
            response_ids, response_mask = tokenize_responses(tokenizer, responses[i : i + batch_size])
            input_ids, attention_mask, _ = pack_query_response(query_ids, query_mask, response_ids, response_mask)
            scores.append(reward_model(*on_model_device(reward_model, input_ids, attention_mask)).cpu())
    return torch.cat(scores) if scores else torch.zeros(0)


def normalise_reward(reward_model: RewardModel, tokenizer, prompts: list[str], responses: list[str],
                     batch_size: int = 32) -> float:
    """Set the reward model's bias so these (prompt, response) pairs score 0 on average.

    InstructGPT §3.5 uses the labeler demonstrations; Huang et al. normalise on samples of the
    initial policy instead. Either works, as the RM only learned score differences. Returns the
    new bias.
    """
    reward_model.set_bias_from(score_texts(reward_model, tokenizer, prompts, responses, batch_size))
    return float(reward_model.bias)
