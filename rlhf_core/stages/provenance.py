"""Provenance: every checkpoint under runs/ records what made it, so a loader reuses it only for the same thing.

    wanted = expected("sft", config, data=["sft.jsonl"], parents={"base model": identity("data/base-tiny")})
    if reusable(path, wanted, strict=True):                          # prints one line when it is not, and why
        ...load it
    save_checkpoint(model, tokenizer, path, extra=writer(wanted))    # provenance.json goes in before the swap

provenance.json, inside the checkpoint folder:

    course_version  COURSE_VERSION of the library that trained it
    stage           "sft", "rm" or "ppo"
    config          {"SFTConfig": {...}}: the stage's config dataclass, every field
    data            {"sft.jsonl": sha256, ...}: the files under data/ that training read
    parents         {"base model": identity, ...}: the checkpoints it started from (see `identity`)
    settings        anything else that changes the result, e.g. {"reward": "labeler"} for PPO
    weights         {"model.safetensors": sha256, ...}: its own weight files
    fingerprint     sha256 of all of the above: this checkpoint's identity, which its children record

A child records its parents' fingerprints, so retraining the SFT model (new weights, new fingerprint) makes the
reward model and PPO policies trained from the old one stale, even when the SFT settings did not change.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

from ..common.paths import DATA_DIR

# Bump when a change to the library alters what training produces (a default in a config, the labeler, a loss,
# the world's generator): every checkpoint in runs/ is then rebuilt on its next load instead of reused.
COURSE_VERSION = "1"
FILE = "provenance.json"
WEIGHT_FILES = ("model.safetensors", "head.safetensors")
COMPARED = ("course_version", "stage", "config", "data", "parents", "settings")  # what must match to reuse


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def identity(checkpoint: str | Path) -> str:
    """What a child records about a parent: its fingerprint (provenance.json), else the sha256 of its weights
    (the shipped base models), else the name itself (a hub model such as "gpt2")."""
    folder = Path(checkpoint)
    if "fingerprint" in (record := read(folder) or {}):
        return record["fingerprint"]
    if (folder / "model.safetensors").is_file():
        return "sha256:" + file_sha256(folder / "model.safetensors")
    return str(checkpoint)


def expected(stage: str, config, data: list[str], parents: dict[str, str], **settings) -> dict:
    """The record a checkpoint of `stage` made now with `config` would carry (without weights and fingerprint)."""
    record = {"course_version": COURSE_VERSION, "stage": stage, "config": {type(config).__name__: asdict(config)},
              "data": {name: file_sha256(DATA_DIR / name) for name in data}, "parents": parents, "settings": settings}
    return json.loads(json.dumps(record))  # as it reads back from provenance.json (a tuple becomes a list)


def writer(record: dict):
    """`extra(folder)` for save_checkpoint / save_pretrained: hashes the weights already in the new folder and writes
    provenance.json beside them, so the checkpoint and its record take their place together."""
    def write(folder: Path) -> None:
        full = record | {"weights": {name: file_sha256(folder / name) for name in WEIGHT_FILES
                                     if (folder / name).is_file()}}
        full["fingerprint"] = hashlib.sha256(json.dumps(full, sort_keys=True).encode()).hexdigest()
        (Path(folder) / FILE).write_text(json.dumps(full, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return write


def read(folder: str | Path, name: str = FILE) -> dict | None:
    """The record in `folder` (or its JSON file `name`), or None when it has none (a checkpoint saved before
    checkpoints recorded it) or one that is not a JSON object (edited by hand: it is written whole or not at all)."""
    path = Path(folder) / name
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def differences(saved: dict, wanted: dict, fields=COMPARED) -> list[str]:
    """Each field that differs, in words: "SFTConfig.epochs: 16 there, 2 here", "data/sft.jsonl has changed"."""
    found = []
    for field in fields:
        there, here = saved.get(field), wanted.get(field)
        if there == here:
            continue
        if field in ("data", "parents"):
            there, here = there or {}, here or {}
            what = "data/{}" if field == "data" else "the {} it started from"
            found += [f"{what.format(name)} has changed" for name in sorted({*there, *here})
                      if there.get(name) != here.get(name)]
        elif field == "config" and there.keys() == here.keys():
            (name, there), (_, here) = *there.items(), *here.items()
            found += [f"{name}.{key}: {there.get(key)!r} there, {here.get(key)!r} here"
                      for key in sorted({*there, *here}) if there.get(key) != here.get(key)]
        else:
            found.append(f"{field}: {there!r} there, {here!r} here")
    return found


def reusable(path: str | Path, wanted: dict, strict: bool = True) -> bool:
    """Whether the checkpoint at `path` was made from `wanted`; if there is one and it was not, prints why in one line.

    strict=False accepts any config (a notebook saved the student's choice there) as long as the data, the parents and
    the course version still match; it says so when that config is not `wanted`'s.
    """
    path = Path(path)
    if not path.is_dir():
        return False
    saved, name = read(path), f"{path.parent.name}/{path.name}"
    if saved is None:
        print(f"{name}: no readable {FILE} (saved before checkpoints recorded their settings), so what made "
              f"it is unknown: training it again")
        return False
    differ = differences(saved, wanted, COMPARED if strict else [f for f in COMPARED if f != "config"])
    if differ:
        print(f"{name} was made from other settings ({'; '.join(differ)}): training it again")
        return False
    if not strict and (custom := differences(saved, wanted, ["config"])):
        print(f"{name}: reusing the model saved there, made with other settings than the defaults "
              f"({'; '.join(custom)}); pass the config you want to train that one instead")
    return True
