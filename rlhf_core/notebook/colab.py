"""Google Colab: the badge and the first cell of every notebook (the installer that cell runs: `colab_install`).

Every notebook opens with a Colab badge (in its title cell) and `SETUP_CELL`, which does nothing unless the kernel
runs on Colab. There it clones the course and runs `colab_install.py` as a script (`SCRIPT`), which
installs the course's requirements *except torch* — Colab's own torch build stays — and the course itself without
its dependencies, then goes on in the course's notebooks folder. A CPU runtime is enough: the course is built for
CPUs (on a GPU runtime its models go to the GPU: `models.loading.default_device`).

The course's address is `REPOSITORY`; a fork sets its own there and rewrites badges and cells with

    python -m rlhf_core.notebook.colab notebooks/

The installer is a file of its own because it runs before the course is installed: it imports nothing of the course.
"""
from __future__ import annotations

import sys
from pathlib import Path

from ..common.files import atomic_file
from .colab_install import CLONE

REPOSITORY = "rlhf-in-miniature/rlhf-in-miniature"   # github.com/<this>: where Colab clones the course from
SCRIPT = "rlhf_core/notebook/colab_install.py"        # the installer, from the course's root: what Colab runs
BADGE_IMAGE = "https://colab.research.google.com/assets/colab-badge.svg"

SETUP_CELL = f'''# On Google Colab only: fetch the course and install it beside Colab's own torch. Anywhere else, nothing happens.
import sys

if "google.colab" in sys.modules:
    import os, subprocess
    course, url = "{CLONE}", "https://github.com/{REPOSITORY}"
    if not os.path.isdir(course):
        subprocess.run(["git", "clone", "--depth", "1", url, course], check=True)
    subprocess.run([sys.executable, f"{{course}}/{SCRIPT}"], check=True)  # the requirements, less torch
    sys.path.insert(0, course)
    os.chdir(f"{{course}}/notebooks")'''


def badge(notebook_name: str) -> str:
    """The markdown of the "Open in Colab" badge for notebooks/<notebook_name>."""
    url = f"https://colab.research.google.com/github/{REPOSITORY}/blob/main/notebooks/{notebook_name}"
    return f"[![Open In Colab]({BADGE_IMAGE})]({url})"


def _text(source) -> str:
    return "".join(source) if isinstance(source, list) else source


def add_to_notebook(nb: dict, notebook_name: str) -> bool:
    """Put the badge under the title of `nb` and SETUP_CELL first among its code cells (replacing older ones).
    `nb` is the notebook's JSON (sources as lists of lines, as the course commits them). Returns whether anything
    changed; modifies `nb` in place."""
    changed = False
    title = nb["cells"][0]
    lines = [line for line in _text(title["source"]).split("\n") if "colab-badge.svg" not in line]
    heading = next(i for i, line in enumerate(lines) if line.startswith("# "))
    body = lines[heading + 1:]
    while body and not body[0].strip():
        body = body[1:]
    source = "\n".join(lines[:heading + 1] + ["", badge(notebook_name), ""] + body)
    if source != _text(title["source"]):
        title["source"], changed = source.splitlines(keepends=True), True
    setup = SETUP_CELL.splitlines(keepends=True)
    first_code = next(i for i, cell in enumerate(nb["cells"]) if cell["cell_type"] == "code")
    if _text(nb["cells"][first_code]["source"]).startswith("# On Google Colab only"):
        if nb["cells"][first_code]["source"] != setup:
            nb["cells"][first_code]["source"], changed = setup, True
    else:
        nb["cells"].insert(1, {"cell_type": "code", "execution_count": None, "id": f"colab-{notebook_name[:2]}",
                               "metadata": {}, "outputs": [], "source": setup})
        changed = True
    return changed


def main(argv: list[str] | None = None) -> None:
    """`python -m rlhf_core.notebook.colab FOLDER`: write the badge and the set-up cell into each notebook of FOLDER."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        raise SystemExit("usage: python -m rlhf_core.notebook.colab FOLDER (the notebooks to give a badge and set-up "
                         "cell); on Colab the set-up cell runs rlhf_core/notebook/colab_install.py")
    import json

    for path in sorted(Path(argv[0]).glob("*.ipynb")):
        nb = json.loads(path.read_text(encoding="utf-8"))
        if add_to_notebook(nb, path.name):
            with atomic_file(path) as f:  # the layout every course notebook is committed in
                f.write(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
            print(f"{path}: badge and set-up cell written")


if __name__ == "__main__":
    main()
