"""The notebooks' code, read without a kernel: every rlhf_core import resolves and no name is used that nothing defines.

Running the notebooks (nbval) finds these too, but minutes later and one notebook at a time; a library change that
moves or renames a function fails here in a second, naming the notebook, the cell and the name.
"""
from __future__ import annotations

import ast
import builtins
import importlib
import importlib.util
import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))
KERNEL_NAMES = {"display", "get_ipython", "In", "Out"}  # what IPython defines in every kernel


def code_cells(path: Path) -> list[tuple[int, ast.Module]]:
    """(index of the cell in the notebook, its parsed code) for each code cell; IPython magics and shell lines
    (%..., !...) are left out."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    parsed = []
    for index, cell in enumerate(cells):
        if cell["cell_type"] == "code":
            source = "".join(cell["source"])
            source = "\n".join("" if re.match(r"\s*[%!]", line) else line for line in source.split("\n"))
            parsed.append((index, ast.parse(source)))
    return parsed


def bound_names(tree: ast.AST) -> set[str]:
    """Every name the code binds anywhere (any scope): assignments, loop and with targets, imports, functions,
    classes, arguments, exception names. Generous on purpose: this test looks for names bound nowhere at all."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(alias.asname or alias.name).split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ExceptHandler) and node.name:
            names.add(node.name)
    return names


def is_submodule(package: str, name: str) -> bool:
    try:
        return importlib.util.find_spec(f"{package}.{name}") is not None
    except ModuleNotFoundError:  # `package` is a module, not a package
        return False


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_rlhf_core_import_resolves(path):
    for index, tree in code_cells(path):
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "rlhf_core":
                module = importlib.import_module(node.module)
                missing = [a.name for a in node.names if not hasattr(module, a.name)
                           and not is_submodule(node.module, a.name)]
                assert not missing, f"{path.name}, cell {index}: {node.module} has no {', '.join(missing)}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == "rlhf_core":
                        importlib.import_module(alias.name)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_name_is_used_that_nothing_defines(path):
    cells = code_cells(path)
    defined = set(dir(builtins)) | KERNEL_NAMES
    for _, tree in cells:
        defined |= bound_names(tree)
    for index, tree in cells:
        unknown = sorted({node.id for node in ast.walk(tree) if isinstance(node, ast.Name)
                          and isinstance(node.ctx, ast.Load) and node.id not in defined})
        assert not unknown, f"{path.name}, cell {index} uses {', '.join(unknown)}, which no cell defines or imports"


def test_the_checks_catch_a_renamed_module_and_an_undefined_name(tmp_path):
    notebook = {"cells": [{"cell_type": "code", "source": ["from rlhf_core.world import tasks\n", "world.all_tasks()"]},
                          {"cell_type": "code", "source": ["from rlhf_core.world.tasks import no_such_function"]}],
                "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "broken.ipynb"
    path.write_text(json.dumps(notebook))
    with pytest.raises(AssertionError, match="cell 0 uses world"):
        test_no_name_is_used_that_nothing_defines(path)
    with pytest.raises(AssertionError, match="has no no_such_function"):
        test_every_rlhf_core_import_resolves(path)
