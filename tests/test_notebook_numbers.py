"""Every number in a notebook's markdown is computed, checked, cited or structural.

A number written into prose goes stale the day a default or a result changes. So the prose of
`notebooks/*.ipynb` may only quote a number that is

- structural: a section, appendix, equation, figure or table reference (§3.5, App. C.4, eq. 2),
  a citation year (Ouyang et al. 2022), a notebook number (notebook 04, 00–06), a list or step
  ordinal (a markdown "1." item, step 2, stage 3), a model name (GPT-2), or an integer 0, 1 or 2
  inside math ($...$), where it is a constant of the formula (½, 1 − ε, (n − 1)/n);
- a paper fact: listed in PAPER_NUMBERS below, with the line of the course's checked paper facts it
  comes from, and quoted in a paragraph that names its source (the paper, a section, an author);
- checked by the notebook: it appears as a numeric literal in one of the notebook's own code cells
  (a setting the notebook passes, a constant it defines, a value an `assert` checks).

Anything else must be printed by a code cell (or written by a `display(Markdown(f"..."))` cell),
or asserted in a code cell, or the prose stops quoting it. There is deliberately no per-notebook
list of exceptions.
"""
from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"

# number -> the line of the course's checked paper facts (PAPER_FACTS) it comes from. A number here is
# accounted for only in a paragraph that also names a source (see SOURCE_CUE).
PAPER_NUMBERS: dict[str, str] = {
    "13k": "InstructGPT data: ~13k SFT prompts with labeler demonstrations",
    "33k": "InstructGPT data: ~33k RM prompts, each with K = 4..9 ranked outputs",
    "4": "InstructGPT data: each RM prompt has K = 4..9 ranked outputs",
    "9": "InstructGPT data: each RM prompt has K = 4..9 ranked outputs",
    "31k": "InstructGPT data: ~31k PPO prompts (no human labels)",
    "73%": "InstructGPT: labelers agree with each other about 73 % of the time",
    "72.6%": "InstructGPT: labelers agree with each other about 73 % of the time (§5.1: 72.6 ± 1.5 %)",
    "1.5%": "InstructGPT: labelers agree with each other about 73 % of the time (§5.1: 72.6 ± 1.5 %)",
    "16": "InstructGPT §3.5, App. C.1: SFT for 16 epochs",
    "0.2": "InstructGPT App. C.1: residual dropout 0.2; App. C.4 and PPO eq. 7: clip 0.2; "
           "Ziegler et al.: adaptive-KL error clipped to ±0.2, value clip 0.2",
    "6B": "InstructGPT §3.5: the reward model is 6B",
    "175B": "InstructGPT §3.5: a 175B RM was unstable; 175B GPT-3 is the baseline",
    "0.02": "InstructGPT App. C.4: β = 0.02; App. E.7: the best KL coefficient is about 0.01–0.02",
    "27.8": "InstructGPT App. C.4: γ = 27.8 (pretraining mix of PPO-ptx)",
    "256k": "InstructGPT App. C.4: 256k episodes",
    "0.01": "InstructGPT App. E.7: the best KL coefficient is about 0.01–0.02",
    "85%": "InstructGPT: 175B InstructGPT preferred to GPT-3 175B 85 ± 3 % of the time",
    "3%": "InstructGPT: 175B InstructGPT preferred to GPT-3 175B 85 ± 3 % of the time",
    "71%": "InstructGPT: preferred to few-shot-prompted GPT-3 71 ± 4 % of the time",
    "4%": "InstructGPT: preferred to few-shot-prompted GPT-3 71 ± 4 % of the time",
    "1.3B": "InstructGPT: the 1.3B InstructGPT is preferred to 175B GPT-3 (100× fewer parameters)",
    "100×": "InstructGPT: the 1.3B InstructGPT is preferred to 175B GPT-3 (100× fewer parameters)",
    "21%": "InstructGPT: closed-domain hallucination 21 % vs 41 % for GPT-3",
    "41%": "InstructGPT: closed-domain hallucination 21 % vs 41 % for GPT-3",
    "25%": "InstructGPT: about 25 % fewer toxic outputs than GPT-3 when prompted to be respectful",
    "6": "Ziegler et al. 2019: adaptive KL target 6 nats",
    "10000": "Ziegler et al. 2019: adaptive KL horizon 10 000",
    "0.15": "Ziegler et al. 2019: β₀ = 0.15 for the style tasks",
    "124M": "Ziegler et al. 2019: 124M GPT-2",
    "0.95": "Ziegler et al. 2019 and GAE: λ = 0.95",
    "0.1": "Rafailov et al. 2023 (DPO): β = 0.1",
}

# A paragraph that names where its number comes from.
SOURCE_CUE = re.compile(
    r"paper|InstructGPT|Ouyang|Ziegler|Stiennon|Gao|Rafailov|DPO|Schulman|Huang|et al\.|§|App\. [A-Z]"
    r"|\beq\.|GPT-3|labelers'|lm-human-preferences|TruthfulQA", re.I)

# Structural spans, removed before numbers are looked for.
STRUCTURAL = [re.compile(p) for p in (
    r"§\s*\d+(?:\.\d+)*",                                              # §3.5
    r"\bApp(?:endix|\.)\s*[A-Z](?:\.\d+)*",                            # App. C.4
    r"\b(?:[Ee]q(?:uation)?s?\.?|[Ff]ig(?:ure)?s?\.?|[Tt]able|[Ss]ection)\s*\(?\d+(?:\.\d+)*\)?"
    r"(?:\s*(?:and|,|–|-|to)\s*\(?\d+\)?)*",                             # eq. 2, Fig. 5, eqs. 1 and 2
    r"\b(?:et al\.?|[A-Z][a-zA-Z]+),?\s*\(?(?:19|20)\d\d[a-z]?\b",      # Ouyang et al. 2022, (Gao 2022)
    r"\barXiv:?\s*\d{4}\.\d{4,5}",                                     # arXiv 2203.02155
    r"\bnotebooks?\s+0\d(?:\s*(?:,|and|or|–|-|to)\s*0\d)*",            # notebook 04, notebooks 02 and 03
    r"(?<![\w.])0\d(?:\s*[–-]\s*0\d)?(?!\w|\.\d)",                       # 04, 00–06: zero-padded = notebook
    r"\b(?:[Ss]tep|[Ss]tage|[Ee]xercise|[Pp]art|[Qq]uestion|[Cc]ell|[Ll]evel)s?\s+\d+"
    r"(?:\s*(?:,|and|or|–|-|to)\s*\d+)*\b",                            # step 2, stages 1–3
    r"(?m)^[ \t]*\d+[.)][ \t]",                                        # a markdown list item "1. "
    r"\*\*Time\*\*:\s*~?\d+\s*minutes",                                # an exercise's time estimate
    r"\b[A-Z][A-Za-z]*-\d+(?:\.\d+)?\b",                               # GPT-2, GPT-3.5
    r"(?<![\w.])\d+(?:\.\d+){2,}(?![\w])",                             # version numbers 2.13.0
)]
MATH = re.compile(r"\$\$.+?\$\$|\$[^$\n]+\$", re.S)
MATH_CONSTANT = re.compile(r"(?<![\w.])[012](?![\w.])|½|\\frac\{1\}\{2\}")
# Links, raw URLs, HTML tags, code fences: not prose.
NOT_PROSE = re.compile(r"```.*?```|\]\([^)]*\)|https?://\S+|<[^>\n]+>", re.S)

_MULT = {"k": 1e3, "M": 1e6, "B": 1e9}
NUMBER = re.compile(
    r"(?<![\w.])(?P<num>10\^\{?[-−]?\d+\}?|\d{1,3}(?:(?:,|[ \u202f\u2009](?=\d{3}(?!\d)))\d{3})+(?![\d])"
    r"|\d+(?:\.\d+)?(?:[eE][-−+]?\d+)?)"
    r"(?P<suffix>\s?%|[kMB](?![\w])|×|(?=\s?(?:±|[–-])\s?[\d.]+\s?%))?")


@dataclass(frozen=True)
class Found:
    text: str            # the number as written, e.g. "73 %", "1e-5", "1.3B"
    values: tuple        # the values a code literal may have to count as checking it
    key: str             # the normalised form looked up in PAPER_NUMBERS


def _parse(match: re.Match) -> Found:
    raw = re.sub(r"[, \u202f\u2009{}]", "", match["num"]).replace("−", "-").replace("10^", "1e")
    # an empty (lookahead) suffix: the "85" of "85 ± 3 %" or the "41" of "41–48 %" is a percentage too
    suffix = (match["suffix"] or "").strip() or ("%" if match["suffix"] == "" else "")
    value = float(raw) * _MULT.get(suffix, 1.0)
    values = (value, value / 100) if suffix == "%" else (value,)
    key = raw + suffix
    return Found(match.group(0).strip(), values, key)


def _blank(text: str, pattern: re.Pattern, keep=None) -> str:
    """Replace every match of `pattern` with spaces (positions stay put)."""
    def repl(m):
        return keep(m) if keep else " " * len(m.group(0))
    return pattern.sub(repl, text)


def prose_numbers(markdown: str) -> list[tuple[Found, int]]:
    """The numbers of a markdown cell that are not structural, with their positions."""
    text = _blank(markdown, NOT_PROSE)
    # In math, the integers 0, 1, 2 and ½ are constants of the formula; other numbers stay.
    text = _blank(text, MATH, keep=lambda m: _blank(m.group(0), MATH_CONSTANT))
    for pattern in STRUCTURAL:
        text = _blank(text, pattern)
    return [(_parse(m), m.start()) for m in NUMBER.finditer(text)]


_ABBREV = re.compile(r"(?:\bal|\bApp|\beq|\bFig|\be\.g|\bi\.e|\bvs|\bcf|\betc)$")


def sentence_at(markdown: str, pos: int) -> str:
    """The sentence (or list item / table row) of `markdown` around position `pos`."""
    ends = [0]
    for m in re.finditer(r"[.!?](?=\s)|\n\s*\n|\n(?=\s*(?:[-*+|]|\d+\.)\s)", markdown):
        if m.group(0) == "." and _ABBREV.search(markdown[:m.start()]):
            continue
        ends.append(m.end())
    ends.append(len(markdown))
    start = max(e for e in ends if e <= pos)
    stop = min((e for e in ends if e > pos), default=len(markdown))
    return " ".join(markdown[start:stop].split())


def paragraph_at(markdown: str, pos: int) -> str:
    """The paragraph (text between blank lines) of `markdown` around position `pos`."""
    starts = [0] + [m.end() for m in re.finditer(r"\n\s*\n", markdown) if m.end() <= pos]
    stop = re.compile(r"\n\s*\n").search(markdown, pos)
    return markdown[starts[-1]:stop.start() if stop else len(markdown)]


def code_values(code_cells: list[str]) -> set[float]:
    """Every numeric literal of the notebook's code, f-string expressions included (comments and strings not)."""
    values = set()
    for source in code_cells:
        source = "\n".join(l for l in source.split("\n") if not l.lstrip().startswith(("%", "!")))
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        values |= {float(node.value) for node in ast.walk(tree) if isinstance(node, ast.Constant)
                   and isinstance(node.value, (int, float)) and not isinstance(node.value, bool)}
    return values


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))


def unaccounted(nb: dict) -> list[tuple[int, str, str]]:
    """(cell index, number, sentence) for every number of the notebook's prose that is unaccounted for."""
    cells = nb["cells"]
    src = lambda c: "".join(c["source"]) if isinstance(c["source"], list) else c["source"]
    literals = code_values([src(c) for c in cells if c["cell_type"] == "code"])
    problems = []
    for index, cell in enumerate(cells):
        if cell["cell_type"] != "markdown":
            continue
        markdown = src(cell)
        for found, pos in prose_numbers(markdown):
            if any(_close(v, lit) for v in found.values for lit in literals):
                continue
            sentence = sentence_at(markdown, pos)
            if _paper_key(found) in PAPER_NUMBERS and SOURCE_CUE.search(paragraph_at(markdown, pos)):
                continue
            problems.append((index, found.text, sentence))
    return problems


def _paper_key(found: Found) -> str:
    return found.key.replace(" ", "")


HOW_TO_FIX = (
    "A number in markdown must be computed or checked. Either print it from a code cell (or write the "
    "sentence in a `display(Markdown(f\"...\"))` cell), or assert it in a code cell that computes it "
    "(with a tolerance), or stop quoting it (\"the cell above prints ...\"). A paper number goes into "
    "PAPER_NUMBERS with its source and is quoted in a paragraph that names the paper.")


def report(name: str, problems) -> str:
    lines = [f"{name}: cell {i}: {number!r} in: {sentence}" for i, number, sentence in problems]
    return "\n".join(lines + ["", HOW_TO_FIX])


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.name)
def test_every_number_in_markdown_is_accounted_for(path):
    problems = unaccounted(json.loads(path.read_text()))
    assert not problems, report(path.name, problems)


# --- the scanner itself, on small synthetic notebooks ----------------------------------------------

def _nb(*cells):
    return {"cells": [{"cell_type": kind, "source": text, "metadata": {}} for kind, text in cells]}


def test_a_stale_measured_number_is_caught_with_its_sentence():
    problems = unaccounted(_nb(("markdown", "PPO reached a gold score of 6.57. It was fun."),
                               ("code", "train(kl_coef=0.05)")))
    assert problems == [(0, "6.57", "PPO reached a gold score of 6.57.")]
    assert "print it from a code cell" in report("a.ipynb", problems)


@pytest.mark.parametrize("text", [
    "See §3.5 and App. C.4 of the paper, and eq. 2.",
    "Ouyang et al. 2022 (arXiv 2203.02155) and Gao et al. 2022 measured it.",
    "Notebook 04 trains PPO; notebooks 05 and 06 evaluate it; the course runs 00–06.",
    "1. load the model\n2. sample\n\nIn step 3 we score.",
    "GPT-2 and GPT-3 differ.",
    r"The loss is $\frac{1}{2}(V - R)^2$ and the ratio is clipped to $[1 - \epsilon, 1 + \epsilon]$.",
    "Best-of-$n$ has KL $\\log n - (n-1)/n$.",
    "Details in [the docs](https://example.com/v1.2/page#3).",
])
def test_structural_numbers_pass(text):
    assert unaccounted(_nb(("markdown", text))) == []


def test_a_number_the_code_sets_or_asserts_passes_and_percentages_match_fractions():
    nb = _nb(("markdown", "We use β = 0.05, 1e-5 as learning rate, and the RM is right on 80 % of pairs."),
             ("code", "config = PPOConfig(kl_coef=0.05, lr=1e-5)\nassert abs(accuracy - 0.80) < 0.05"))
    assert unaccounted(nb) == []


def test_a_paper_number_passes_only_where_its_paragraph_names_its_source():
    assert unaccounted(_nb(("markdown", "InstructGPT uses β = 0.02 (App. C.4)."))) == []
    assert unaccounted(_nb(("markdown", "**What the paper found.** A lot. They used β = 0.02."))) == []
    assert unaccounted(_nb(("markdown", "The paper is good.\n\nOur run uses β = 0.02."))) == [
        (0, "0.02", "Our run uses β = 0.02.")]


def test_numbers_in_comments_and_strings_of_code_do_not_count():
    nb = _nb(("markdown", "It reaches 7.5 gold, 3 % of 1,920."),
             ("code", "# it reaches 7.5\nprint('7.5', f'{x:.3f} of {1920}')"))
    assert [p[1] for p in unaccounted(nb)] == ["7.5", "3 %"]  # a format spec is not a literal


def test_ranges_scientific_and_suffixed_numbers_are_parsed():
    found = prose_numbers("Between 5–10 steps, lr 1e-5, $10^{-6}$, a 1.3B model, 13k prompts, 1,920 "
                          "episodes, 10 000 steps, 85 ± 3 %, 41–48 %.")
    assert [f.key for f, _ in found] == ["5", "10", "1e-5", "1e-6", "1.3B", "13k", "1920", "10000",
                                         "85%", "3%", "41%", "48%"]
