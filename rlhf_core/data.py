"""Loading the mini world's splits (data/<split>.jsonl) as `datasets.Dataset`s, with clear errors."""
from __future__ import annotations

import json
from pathlib import Path

from .world import DATA_DIR, SPLITS

COLUMNS = {
    "pretrain": ("text",),
    "sft": ("prompt", "response", "family"),
    "rm": ("prompt", "family"),
    "ppo": ("prompt", "family"),
    "dev": ("prompt", "family"),
    "eval": ("prompt", "family"),
}
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
