"""Where the course's files live: data/ (shipped, committed) and runs/ (made by running the course, git-ignored)."""
from __future__ import annotations

from pathlib import Path

REPO_DIR = Path(__file__).resolve().parents[2]  # the folder that holds rlhf_core/, data/ and notebooks/
DATA_DIR = REPO_DIR / "data"                    # the mini world's splits and the shipped base models
RUNS_DIR = REPO_DIR / "runs"                    # checkpoints made by running the course


def run_path(stage: str, base: str = "tiny") -> Path:
    """Where the course keeps a stage's checkpoint for `base`: runs/{stage}-{base} ("sft", "rm", "ppo", ...)."""
    return RUNS_DIR / f"{stage}-{base}"
