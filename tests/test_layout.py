"""The package's layering, written down once (the README's "Architecture" section explains it).

Every module of rlhf_core belongs to a layer; a module may import from its own layer or a lower one, never a higher
one, and only at the top of the file (an import hidden inside a function is how cycles used to be kept from failing).
The module import graph has no cycle, and no module is longer than MAX_LINES.
"""
from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "rlhf_core"
LAYERS = [  # bottom first: (layer, the first part of each of its modules' names inside rlhf_core)
    ("common", ("common",)),                 # paths, atomic writes, seeds, train/eval mode, timing
    ("world", ("world",)),                   # the knowledge, the data made from it, the simulated labeler
    ("models", ("models",)),                 # loading, sequences and generation, reward and value heads
    ("algorithms", ("validation", "losses", "evaluate")),  # the paper's equations; measuring a model
    ("stages", ("stages",)),                 # pretraining, SFT, reward model, PPO, DPO
    ("notebook", ("notebook",)),             # tables, figures, the dashboard, widgets, exercises, site
    ("pipeline", ("pipeline",)),             # every stage headless, with the figures
]
MAX_LINES = 500


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer_of(module: str) -> int:
    """The index in LAYERS of a module ("stages.ppo" → 4); the package's own __init__ ("") is the façade on top."""
    if module == "":
        return len(LAYERS)
    for index, (_, prefixes) in enumerate(LAYERS):
        if module.split(".")[0] in prefixes:
            return index
    raise AssertionError(f"rlhf_core.{module} belongs to no layer: put it in one of the folders of "
                         f"tests/test_layout.py's LAYERS, or add its name to the right layer there")


def imports(module: str, modules: dict[str, Path]) -> list[tuple[str, int, bool]]:
    """(imported module inside rlhf_core, line, at the top of the file?) for each import of rlhf_core in `module`."""
    path = modules[module]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = [p for p in (module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]) if p]
    top = set(map(id, tree.body))
    found = []
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.split(".")[0] == "rlhf_core":
                target = node.module.partition(".")[2]
            else:
                continue
            for alias in node.names:  # `from . import provenance` imports a module, not a name
                sub = f"{target}.{alias.name}".strip(".")
                targets.append(sub if sub in modules else target)
        elif isinstance(node, ast.Import):
            targets = [a.name.partition(".")[2] for a in node.names if a.name.split(".")[0] == "rlhf_core"]
        found += [(target, node.lineno, id(node) in top) for target in targets]
    return found


def layering_problems(module: str, modules: dict[str, Path]) -> list[str]:
    problems = []
    for target, line, at_top in imports(module, modules):
        where = f"rlhf_core.{module}, line {line}"
        if not at_top:
            problems.append(f"{where}: imports rlhf_core.{target} inside a function; import it at the top of the "
                            f"file (if that makes a cycle, the code is in the wrong layer)")
        elif module and layer_of(target) > layer_of(module):
            problems.append(f"{where}: layer {LAYERS[layer_of(module)][0]} imports rlhf_core.{target}, layer "
                            f"{LAYERS[layer_of(target)][0]}, which is above it; move the code it needs down, or "
                            f"the importer up")
    return problems


def import_cycle(modules: dict[str, Path]) -> list[str] | None:
    """One cycle of the module-level import graph, as a list of modules (first == last), or None."""
    graph = {m: sorted({t for t, _, _ in imports(m, modules) if t != m and t in modules}) for m in modules if m}
    state: dict[str, str] = {}

    def visit(module, path):
        state[module] = "open"
        for target in graph[module]:
            if state.get(target) == "open":
                return path[path.index(target):] + [target]
            if target not in state and (cycle := visit(target, path + [target])):
                return cycle
        state[module] = "done"
        return None

    for module in sorted(graph):
        if module not in state and (cycle := visit(module, [module])):
            return cycle
    return None


def test_every_module_imports():
    for module in (m for m in MODULES if not m.endswith("__main__")):  # a __main__ runs its command
        importlib.import_module("rlhf_core" + (f".{module}" if module else ""))


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down_and_sit_at_the_top(module):
    assert not layering_problems(module, MODULES)


def test_no_import_cycle():
    cycle = import_cycle(MODULES)
    assert cycle is None, "import cycle: " + " → ".join(f"rlhf_core.{m}" for m in cycle)


def test_modules_stay_short():
    long = {f"rlhf_core/{p.relative_to(PACKAGE)}": n for p in MODULES.values()
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines (split them by what they do): {long}"


def test_the_checks_catch_a_bad_layout(tmp_path):
    """The rules above can fail: an upward import, a function-level one and a cycle are each caught."""
    fake = {name: tmp_path / f"{name}.py" for name in ("world.a", "world.b", "models.c")}
    fake["world.a"].write_text("from ..models.c import x\nfrom .b import y\n")
    fake["world.b"].write_text("from .a import z\n")
    fake["models.c"].write_text("def f():\n    from ..common.x import z\n")
    assert "above it" in " ".join(layering_problems("world.a", fake))
    assert "inside a function" in " ".join(layering_problems("models.c", fake))
    assert not layering_problems("world.b", fake)
    assert import_cycle(fake) == ["world.a", "world.b", "world.a"]
    fake["world.b"].write_text("x = 1\n")
    assert import_cycle(fake) is None
