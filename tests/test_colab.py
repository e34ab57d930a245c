"""Colab: every notebook's badge and set-up cell, and what the set-up installs there."""
import copy
import json
import subprocess
import sys
from pathlib import Path

from rlhf_core.notebook import colab, colab_install
from rlhf_core.notebook.colab import SETUP_CELL, add_to_notebook, badge
from rlhf_core.notebook.colab_install import colab_requirements

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


def test_every_notebook_opens_with_its_badge_and_the_setup_cell():
    assert len(NOTEBOOKS) >= 8
    for path in NOTEBOOKS:
        nb = json.loads(path.read_text())
        title = "".join(nb["cells"][0]["source"])
        assert badge(path.name) in title and f"/blob/main/notebooks/{path.name})" in title, path.name
        first_code = next(c for c in nb["cells"] if c["cell_type"] == "code")
        assert "".join(first_code["source"]) == SETUP_CELL, f"{path.name}: run python -m rlhf_core.notebook.colab notebooks/"
        before = copy.deepcopy(nb)
        assert not add_to_notebook(nb, path.name) and nb == before, "writing them again changes nothing"


def test_the_setup_cell_does_nothing_off_colab(tmp_path):
    script = tmp_path / "setup.py"
    script.write_text(SETUP_CELL + "\nprint(os.getcwd() if 'os' in dir() else 'untouched')\n")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path, check=True)
    assert out.stdout.strip() == "untouched"


def test_colab_keeps_its_own_torch_and_gets_every_other_pin():
    requirements = (REPO / "requirements.txt").read_text()
    needed = colab_requirements(requirements)
    assert not any(spec.lower().startswith("torch") for spec in needed)
    assert "transformers==" in " ".join(needed) and "ipywidgets==" in " ".join(needed)
    assert not any(spec.startswith("-e") or "#" in spec for spec in needed)
    assert colab_requirements("torch==2.0  # x\ntorchvision==1\n\n-e .\nnumpy>=1 # y\n") == ["torchvision==1", "numpy>=1"]


def test_a_new_notebook_gets_the_badge_under_its_title_and_the_cell_before_its_code():
    nb = {"cells": [{"cell_type": "markdown", "metadata": {}, "source": ["# 09 · New\n", "\n", "Intro.\n"]},
                    {"cell_type": "code", "metadata": {}, "source": ["import torch\n"], "outputs": [],
                     "execution_count": None}]}
    assert add_to_notebook(nb, "09_new.ipynb")
    assert "".join(nb["cells"][0]["source"]) == f"# 09 · New\n\n{badge('09_new.ipynb')}\n\nIntro.\n"
    assert "".join(nb["cells"][1]["source"]) == SETUP_CELL and nb["cells"][2]["source"] == ["import torch\n"]


def test_the_script_colab_runs_is_there_and_runs_before_the_course_is_installed(tmp_path):
    # the set-up cell runs `python <course>/SCRIPT` before anything is installed: the file must be where the cell
    # says, import nothing of the course as a script, and find requirements.txt from where it lies
    script = REPO / colab.SCRIPT
    assert script.resolve() == Path(colab_install.__file__).resolve()
    assert f"{{course}}/{colab.SCRIPT}" in SETUP_CELL
    assert colab_install.COURSE_ROOT == REPO and (REPO / "requirements.txt").is_file()
    probe = ("import runpy, sys; sys.modules['rlhf_core'] = None; "  # any import of the course fails
             f"g = runpy.run_path({str(script)!r}, run_name='colab_script'); print(g['COURSE_ROOT'])")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert Path(out.stdout.strip()) == REPO
