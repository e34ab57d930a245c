"""The installer Colab's set-up cell runs (`python rlhf_core/notebook/colab_install.py`, see `notebook.colab`).

It runs before the course is installed, so it imports nothing of the course: it installs the course's requirements
*except torch* — Colab's own torch build stays — and then the course itself without its dependencies.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CLONE = "/content/rlhf-in-miniature"               # where the set-up cell clones the course on Colab
COURSE_ROOT = Path(__file__).resolve().parents[2]  # the course this file belongs to: the folder of requirements.txt


def colab_requirements(requirements: str) -> list[str]:
    """The lines of requirements.txt that Colab needs: every pin except torch (Colab's stays) and the course's own
    editable install (done separately, without dependencies). Comments and blank lines dropped."""
    needed = []
    for line in requirements.splitlines():
        spec = line.split("#", 1)[0].strip()
        name = spec.split("=")[0].split("<")[0].split(">")[0].split("[")[0].strip().lower()
        if spec and name != "torch" and not spec.startswith("-e"):
            needed.append(spec)
    return needed


def install(course: str | Path = CLONE) -> list[list[str]]:
    """The pip commands that install the course at `course` on Colab, run one after the other; returns them."""
    course = Path(course)
    commands = [[sys.executable, "-m", "pip", "install", "-q",
                 *colab_requirements((course / "requirements.txt").read_text(encoding="utf-8"))],
                [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "-e", str(course)]]
    for command in commands:
        subprocess.run(command, check=True)
    return commands


if __name__ == "__main__":
    install(COURSE_ROOT)
