"""Small helpers for the notebooks: tables, the labeler's verdict, few-shot prompts, the set-up check.

Plain functions of data, tested in tests/test_notebook_support.py, so the notebooks' cells stay short:

    html_table(rows)                 a list of dicts -> an HTML table (text escaped: model output is shown as is)
    judgement_row(judgement)         a Judgement -> {helpful, honest, harmless, fluent, gold, notes} for a table row
    judgement_scores(judgement)      a Judgement -> {criterion: "score × weight = points", gold, notes} for widgets
    corpus_turns(document)           a pretraining document -> its (prompt, response) chat turns
    few_shot_prompts(prompts, demos) each prompt after k demonstrations: the "prompt engineering" baseline
    setup_report()                   versions and data files: what the welcome notebook checks
"""
from __future__ import annotations

import html
import importlib.metadata
import numbers
import random
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .labeler import WEIGHTS, Judgement
from .world import DATA_DIR, SPLITS

_TABLE = 'style="border-collapse:collapse;font-size:12px;text-align:left;margin:4px 0"'
_CELL = 'style="border:1px solid #ddd;padding:3px 6px;vertical-align:top;text-align:left"'
_TEXT = ('style="border:1px solid #ddd;padding:3px 6px;vertical-align:top;text-align:left;'
         'white-space:pre-wrap;font-family:monospace;max-width:420px"')


def _cell_text(value: Any, fmt: str | None, digits: int) -> str:
    if fmt is not None:
        return fmt.format(value)
    if isinstance(value, bool):
        return "✓" if value else "✗"
    if isinstance(value, numbers.Integral):
        return f"{value:,}"
    if not isinstance(value, numbers.Real):
        return str(value)
    return f"{float(value):.{digits}f}"


def html_table(rows: Sequence[Mapping[str, Any]], digits: int = 2, formats: Mapping[str, str] | None = None,
               text_columns: Iterable[str] = ()) -> str:
    """An HTML table with one row per dict; the columns are the keys, in first-seen order.

    digits        decimals for floats (ints get thousands separators, booleans ✓ / ✗, strings stay as they are)
    formats       per-column format strings, e.g. {"toxicity": "{:.0%}"}
    text_columns  columns of model text: monospace, newlines kept (a "\\nHuman:" turn stays visible)
    Every cell is HTML-escaped, so model output can never inject markup.
    """
    formats = dict(formats or {})
    text_columns = set(text_columns)
    columns = list(dict.fromkeys(key for row in rows for key in row))
    if not columns:
        return "<p><i>(no rows)</i></p>"
    head = "".join(f"<th {_CELL}>{html.escape(str(c))}</th>" for c in columns)
    body = []
    for row in rows:
        cells = []
        for c in columns:
            text = html.escape(_cell_text(row[c], formats.get(c), digits)) if c in row else ""
            cells.append(f"<td {_TEXT if c in text_columns else _CELL}>{text}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table {_TABLE}><tr>{head}</tr>{''.join(body)}</table>"


def judgement_row(judgement: Judgement) -> dict[str, Any]:
    """The labeler's breakdown as one table row: the four criteria in [0, 1], gold in [0, 10], notes joined."""
    return {name: getattr(judgement, name) for name in WEIGHTS} | {"gold": judgement.gold,
                                                                   "notes": "; ".join(judgement.notes) or "—"}


def judgement_scores(judgement: Judgement) -> dict[str, str]:
    """The labeler's breakdown as display strings: each criterion with its weight and points, gold, notes.

    >>> judgement_scores(Judgement(1.0, 0.0, 1.0, 1.0, ["false: blue"]))["honest"]
    '0.00 × 2 = 0.0'
    """
    scores = {name: f"{getattr(judgement, name):.2f} × {weight:g} = {weight * getattr(judgement, name):.1f}"
              for name, weight in WEIGHTS.items()}
    scores["gold"] = f"{judgement.gold:.1f} / {sum(WEIGHTS.values()):g}"
    scores["notes"] = "; ".join(judgement.notes) or "—"
    return scores


def corpus_turns(document: str) -> list[tuple[str, str]]:
    """The (prompt, response) chat turns of a pretraining document; [] for a fact page.

    Forum threads are chat turns joined by newlines, so `"\\n".join(p + r for p, r in turns)` gives the
    document back; each prompt ends with "\\nAssistant:" and can be scored by the labeler.
    """
    turns = []
    for turn in re.split(r"\n(?=Human: )", document):
        instruction, found, response = turn.partition("\nAssistant:")
        if found and instruction.startswith("Human: "):
            turns.append((instruction + found, response))
    return turns


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


_PACKAGES = ("torch", "transformers", "tokenizers", "datasets", "numpy", "matplotlib", "ipywidgets")


def _pinned_versions(requirements) -> dict[str, str]:
    pins = {}
    if requirements.exists():
        for line in requirements.read_text().splitlines():
            match = re.match(r"\s*([A-Za-z0-9_.-]+)==([^\s#;]+)", line)
            if match:
                pins[match.group(1).lower()] = match.group(2)
    return pins


def setup_report(data_dir=DATA_DIR) -> list[dict[str, Any]]:
    """What the course needs, checked: Python, the packages (vs requirements.txt) and the data files.

    One dict per item: {"item", "found", "ok", "note"}. ok is False only for what stops the course
    (a missing package or data file); a version other than the tested one is ok, with a note.
    """
    from pathlib import Path

    data_dir = Path(data_dir)
    pins = _pinned_versions(data_dir.parent / "requirements.txt")
    python = ".".join(map(str, sys.version_info[:3]))
    rows = [{"item": "python", "found": python, "ok": sys.version_info >= (3, 10),
             "note": "tested with 3.11" if sys.version_info[:2] != (3, 11) else ""}]
    for package in _PACKAGES:
        try:
            found = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            rows.append({"item": package, "found": "missing", "ok": False,
                         "note": "pip install -r requirements.txt"})
            continue
        pinned = pins.get(package)
        note = f"tested with {pinned}" if pinned and found.split("+")[0] != pinned else ""
        rows.append({"item": package, "found": found, "ok": True, "note": note})
    for split in SPLITS:
        path = data_dir / f"{split}.jsonl"
        if path.exists():
            with open(path, encoding="utf-8") as f:
                n = sum(1 for line in f if line.strip())
            rows.append({"item": f"data/{split}.jsonl", "found": f"{n:,} records", "ok": n > 0, "note": ""})
        else:
            rows.append({"item": f"data/{split}.jsonl", "found": "missing", "ok": False,
                         "note": "python -m rlhf_core.world --out data"})
    for name in ("tiny", "small"):
        folder = data_dir / f"base-{name}"
        present = (folder / "model.safetensors").exists() and (folder / "tokenizer.json").exists()
        rows.append({"item": f"data/base-{name}", "found": "present" if present else "missing", "ok": present,
                     "note": "" if present else f"git checkout -- data/base-{name}, or "
                                                f"python -m rlhf_core.pretrain --model {name}"})
    import torch

    from .models import available_cores, default_device

    threads = torch.get_num_threads()
    rows.append({"item": "torch threads", "found": f"{threads} (of {available_cores()} cores)", "ok": True,
                 "note": "set once by rlhf_core: RLHF_THREADS=N overrides; give each of two runs sharing the "
                         "cores half of them" if threads <= available_cores() else
                         "more threads than cores: slow; set RLHF_THREADS to the number of cores"})
    try:
        device, ok, note = str(default_device()), True, "where every model goes: RLHF_DEVICE=cpu or cuda overrides"
    except ValueError as error:  # RLHF_DEVICE names a device this machine has not got
        device, ok, note = "?", False, str(error)
    rows.append({"item": "device", "found": device, "ok": ok, "note": note})
    return rows
