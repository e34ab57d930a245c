"""Small helpers for the notebooks: every HTML table they show, the labeler's verdict, the set-up check.

Plain functions of data, tested in tests/test_notebook_support.py and tests/test_plots.py, so the notebooks' cells
stay short. Every table has the one look set here (left-aligned cells, model text in monospace with its newlines),
and every cell is HTML-escaped, so model output can never inject markup:

    html_table(rows)                 a list of dicts -> an HTML table (text escaped: model output is shown as is)
    render_samples_html(samples)     (prompt, response[, extra dict]) rows -> a table, extras as columns
    render_scores_html(scores)       {name: score} -> a two-column table (the text scorer's verdict)
    render_side_by_side_html(...)    prompts with every model's response beside them (the side-by-side pages)
    judgement_row(judgement)         a Judgement -> {helpful, honest, harmless, fluent, gold, notes} for a table row
    judgement_scores(judgement)      a Judgement -> {criterion: "score × weight = points", gold, notes} for widgets
    corpus_turns(document)           a pretraining document -> its (prompt, response) chat turns
    setup_report()                   versions and data files: what the welcome notebook checks
"""
from __future__ import annotations

import html
import importlib.metadata
import math
import numbers
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..common.paths import DATA_DIR
from ..models.loading import available_cores, default_device
from ..world.corpus import SPLITS
from ..world.labeler import Judgement, WEIGHTS
from ..world.tasks import last_instruction

# The one look of every table. Cells say text-align:left themselves: Jupyter's stylesheet right-aligns cells and
# centres tables, and a model's answer reads badly either way.
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


def _fmt(value: Any) -> str:
    """A score cell: floats signed to three decimals, ints as they are, anything else escaped text."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return html.escape(str(value))
    if isinstance(value, numbers.Integral):
        return str(value)
    return "nan" if math.isnan(value) else f"{float(value):+.3f}"


def render_samples_html(samples: Sequence[Sequence[Any]], max_rows: int | None = None,
                        max_chars: int = 400) -> str:
    """HTML table of samples: each a (prompt, response) or (prompt, response, extra_dict).

    Extra dicts (e.g. {"score": 0.4, "gold": 1.0}) become columns. All text is escaped."""
    samples = list(samples)[:max_rows] if max_rows else list(samples)
    if not samples:
        return "<p><i>no samples</i></p>"
    extra_keys: list[str] = []
    for sample in samples:
        for key in (sample[2] if len(sample) > 2 and sample[2] else {}):
            if key not in extra_keys:
                extra_keys.append(key)
    header = "".join(f"<th {_CELL}>{html.escape(h)}</th>"
                     for h in ["prompt", "response", *extra_keys])
    rows = []
    for sample in samples:
        prompt, response = (str(s) for s in sample[:2])
        extra = sample[2] if len(sample) > 2 and sample[2] else {}
        cells = [_shorten(prompt, max_chars), _shorten(response, max_chars)]
        text = "".join(f"<td {_TEXT}>{html.escape(c)}</td>" for c in cells)
        nums = "".join(f"<td {_CELL}>{_fmt(extra.get(k, ''))}</td>" for k in extra_keys)
        rows.append(f"<tr>{text}{nums}</tr>")
    return f"<table {_TABLE}><tr>{header}</tr>{''.join(rows)}</table>"


def _shorten(text: str, max_chars: int) -> str:
    return text if len(text) <= max_chars else text[: max_chars - 1] + "…"


def render_scores_html(scores: Mapping[str, Any]) -> str:
    """HTML table of named scores, e.g. {"reward model": 0.3, "gold": 1.2, "helpful": "yes"}."""
    rows = "".join(f"<tr><th {_CELL}>{html.escape(str(k))}</th><td {_CELL}>{_fmt(v)}</td></tr>"
                   for k, v in scores.items())
    return f"<table {_TABLE}>{rows}</table>"


def render_side_by_side_html(prompts: Sequence[str], responses: Mapping[str, Sequence[str]],
                             gold: Mapping[str, Sequence[float]] | None = None, start: int = 0,
                             page_size: int = 5, max_chars: int = 200) -> str:
    """HTML table of rows start .. start + page_size: the prompt, then each model's response (and gold score)."""
    names = list(responses)
    header = "".join(f"<th {_CELL}>{html.escape(h)}</th>" for h in ["#", "prompt", *names])
    rows = []
    for i in range(start, min(start + page_size, len(prompts))):
        prompt = last_instruction(prompts[i])
        cells = [f"<td {_CELL}>{i}</td>", f"<td {_TEXT}>{html.escape(_shorten(prompt, max_chars))}</td>"]
        for name in names:
            text = html.escape(_shorten(str(responses[name][i]), max_chars))
            if gold is not None and name in gold:
                text += f"<br><span style='color:#8a6d00'>gold {float(gold[name][i]):.1f}</span>"
            cells.append(f"<td {_TEXT}>{text}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table {_TABLE}><tr>{header}</tr>{''.join(rows)}</table>"


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
                                                f"python -m rlhf_core.stages.pretrain --model {name}"})
    import torch


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
