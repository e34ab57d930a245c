"""Reading the mini world's data: the splits (data/<split>.jsonl) as `datasets.Dataset`s with clear errors, the
pretraining corpus's held-out documents, and few-shot prompts made from demonstrations."""
from __future__ import annotations

import json
import random
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..common.paths import DATA_DIR
from .corpus import SPLITS

COLUMNS = {
    "pretrain": ("text",),
    "sft": ("prompt", "response", "family"),
    "rm": ("prompt", "family"),
    "ppo": ("prompt", "family"),
    "dev": ("prompt", "family"),
    "eval": ("prompt", "family"),
}
TRAINING_PROMPT_SPLITS = ("ppo", "rm", "sft")  # every split whose prompts a model may learn from
HELD_OUT_SPLITS = ("dev", "eval")               # where the models are measured: never trained on
PRETRAIN_HELDOUT_FRACTION = 0.02  # the corpus's last documents: no shipped model trained on them
_REGENERATE = "Regenerate the data with `python -m rlhf_core.world --out data`."


def read_jsonl(path: str | Path, required: tuple[str, ...] = ()) -> list[dict]:
    """Records of a JSONL file; a malformed line raises ValueError naming the file and the line."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist. {_REGENERATE}")
    records = []
    with open(path, "rb") as f:  # bytes, so that text that is not UTF-8 is reported with its line too
        for number, raw in enumerate(f, start=1):  # lines end at "\n" ("\r\n" too: "\r" is JSON whitespace)
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise ValueError(f"{path}, line {number}: not UTF-8 text ({error.reason} at byte {error.start}). "
                                 f"{_REGENERATE}") from None
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}, line {number}: not valid JSON ({error.msg}). {_REGENERATE}") from None
            except RecursionError:  # json gives up on arrays/objects nested thousands deep
                raise ValueError(f"{path}, line {number}: JSON nested too deeply to read. {_REGENERATE}") from None
            if not isinstance(record, dict):
                raise ValueError(f"{path}, line {number}: expected a JSON object, got {type(record).__name__}. "
                                 f"{_REGENERATE}")
            missing = [c for c in required if not isinstance(record.get(c), str)]
            if missing:
                raise ValueError(f"{path}, line {number}: missing text field(s) {missing}. {_REGENERATE}")
            records.append(record)
    if not records:
        raise ValueError(f"{path} holds no records. {_REGENERATE}")
    return records


def load_split(name: str, data_dir: str | Path = DATA_DIR):
    """The split `name` ("pretrain", "sft", "rm", "ppo", "dev" or "eval") as a `datasets.Dataset`.

    "dev" is carved from the PPO prompts (30 % of each family, never trained on): tune settings on it and
    report "eval" only for the settings you chose, as the course's own numbers are.

    Every split but "pretrain" has a "prompt" column with the exact text the model is given (and "family",
    the kind of instruction); "sft" adds "response"; "pretrain" has "text".
    """
    from datasets import Dataset

    if name not in SPLITS:
        raise ValueError(f"unknown split {name!r}; choose one of {', '.join(SPLITS)}")
    records = read_jsonl(Path(data_dir) / f"{name}.jsonl", required=COLUMNS[name])
    return Dataset.from_list(records)


def training_prompts(splits: Sequence[str], setting: str = "prompt_splits") -> list[str]:
    """Every prompt of `splits`, in file order: the prompts a stage learns from (`setting` names its config field).

    Refuses dev and eval, whose prompts measure the models and must never be trained on, and an empty choice.
    """
    splits = tuple(splits)
    held_out = [name for name in splits if name in HELD_OUT_SPLITS]
    if held_out:
        raise ValueError(f"{setting} {splits} includes {', '.join(held_out)}: those prompts measure the models and "
                         f"must never be trained on; use any of {', '.join(TRAINING_PROMPT_SPLITS)}")
    if not splits:
        raise ValueError(f"{setting} is empty; use any of {', '.join(TRAINING_PROMPT_SPLITS)}")
    return [prompt for name in splits for prompt in load_split(name)["prompt"]]


def split_corpus(texts: list[str], heldout_fraction: float) -> tuple[list[str], list[str]]:
    n_heldout = max(1, int(len(texts) * heldout_fraction))
    return texts[:-n_heldout], texts[-n_heldout:]


def few_shot_prompts(prompts: Sequence[str], demonstrations: Iterable[tuple[str, str]], k: int = 3,
                     seed: int = 0) -> list[str]:
    """Each prompt preceded by k demonstrations in the same chat format: few-shot prompting.

    InstructGPT's "prompt engineering" baseline is GPT-3 given a few-shot prefix. Here each prompt gets k
    (prompt, response) pairs drawn at random (seeded) from `demonstrations`, one chat turn each, joined by
    newlines like the forum threads of the pretraining corpus. The labeler judges the last "Human:" turn,
    so a few-shot prompt is scored as the instruction at its end.
    """
    demonstrations = list(demonstrations)
    if not 0 <= k <= len(demonstrations):
        raise ValueError(f"k must be between 0 and the number of demonstrations ({len(demonstrations)}), got {k}")
    rng = random.Random(seed)
    return ["".join(p + r + "\n" for p, r in rng.sample(demonstrations, k)) + prompt for prompt in prompts]


def heldout_pretrain_texts() -> list[str]:
    """The pretraining documents no shipped model trained on (the corpus's last `PRETRAIN_HELDOUT_FRACTION`)."""
    return split_corpus(list(load_split("pretrain")["text"]), PRETRAIN_HELDOUT_FRACTION)[1]
