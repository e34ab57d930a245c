"""Student copies of the notebooks: nbgrader's solution regions stripped, the library's solutions left out.

``strip_solutions`` turns a code cell's ``### BEGIN SOLUTION`` ... ``### END SOLUTION`` region into
``raise NotImplementedError(<title>)`` and removes its hidden tests; ``exercise_title`` reads that title from the
markdown header above the cell. ``shown_references`` finds a cell that would print the code of an exercise's
reference (``REFERENCES``), and ``make_student_notebook`` leaves such cells out, with those tagged
``library-source``, a note in their place. ``main`` is the command line (``__main__.py`` runs it)::

    python -m rlhf_core.notebook.exercises student notebooks/ student_notebooks/
    python -m rlhf_core.notebook.exercises list notebooks/

nbformat is imported in the functions that read or write notebooks: its import takes seconds (the JSON-schema
validator), and a notebook that imports a check never needs it.
"""

from __future__ import annotations

import argparse
import ast
import copy
import re
from pathlib import Path

from ...common.files import atomic_file
from .references import REFERENCES


def _marker(words: str) -> re.Pattern:
    return re.compile(rf"^(?P<indent>[ \t]*)#+[ \t]*{words}[ \t]*$")


_BEGIN = {"solution": _marker("BEGIN SOLUTION"), "hidden tests": _marker("BEGIN HIDDEN TESTS")}
_END = {"solution": _marker("END SOLUTION"), "hidden tests": _marker("END HIDDEN TESTS")}
GENERIC_TITLE = "Exercise: replace this line with your solution"


def strip_solutions(source: str, title: str = GENERIC_TITLE) -> str:
    """The student's version of a code cell's source.

    Each region from a ``### BEGIN SOLUTION`` line to its ``### END SOLUTION`` line (inclusive) becomes
    one line, ``raise NotImplementedError(title)``, at the markers' indentation; each
    ``### BEGIN HIDDEN TESTS`` ... ``### END HIDDEN TESTS`` region is removed. Code before and after
    (the ``def`` line, the docstring) stays. Unbalanced or nested markers raise ValueError.
    """
    out: list[str] = []
    region, opened_at = None, 0
    for number, line in enumerate(source.split("\n"), 1):
        begins = [kind for kind, pattern in _BEGIN.items() if pattern.match(line)]
        ends = [kind for kind, pattern in _END.items() if pattern.match(line)]
        if begins:
            if region:
                raise ValueError(f"line {number}: BEGIN {begins[0].upper()} inside the {region} region "
                                 f"opened on line {opened_at}; close it first.")
            region, opened_at = begins[0], number
            if region == "solution":
                indent = _BEGIN["solution"].match(line)["indent"]
                out.append(f"{indent}raise NotImplementedError({_string_literal(title)})")
        elif ends:
            if region != ends[0]:
                kind = ends[0].upper()
                raise ValueError(f"line {number}: END {kind} without a matching BEGIN {kind}.")
            region = None
        elif region is None:
            out.append(line)
    if region:
        raise ValueError(f"line {opened_at}: BEGIN {region.upper()} has no matching END {region.upper()}.")
    return "\n".join(out)


def _string_literal(text: str) -> str:
    """``text`` as a Python string literal, in double quotes where it can be."""
    plain = '"' not in text and "\\" not in text and text.isprintable()
    return f'"{text}"' if plain else repr(text)


def _has_solution(cell) -> bool:
    lines = cell.get("source", "").split("\n")
    return cell.get("cell_type") == "code" and any(_BEGIN["solution"].match(line) for line in lines)


def exercise_title(cells: list, index: int) -> str:
    """The message for the exercise in ``cells[index]``: the nearest markdown cell above it that opens with a
    header gives its last header ("### Exercise — implement `compute_gae`" gives "Exercise — implement
    `compute_gae`"; a cell "## Exercises" with a "### Exercise — ..." under it gives the latter; another
    header gets "Exercise: " in front), or a generic text if there is none."""
    for cell in reversed(cells[:index]):
        if cell.get("cell_type") != "markdown":
            continue
        lines = [line.strip() for line in cell.get("source", "").split("\n") if line.strip()]
        if not lines or not lines[0].startswith("#"):
            continue
        headers, fenced = [], False
        for line in lines:
            fenced ^= line.startswith("```")                      # a "# comment" in a code block is no header
            if not fenced and line.startswith("#"):
                headers.append(line.lstrip("#").strip().rstrip("#").strip())
        header = next((h for h in reversed(headers) if h), "")
        if header:
            return header if header.lower().startswith("exercise") else f"Exercise: {header}"
    return GENERIC_TITLE


SOURCE_TAG = "library-source"   # a cell tag: shown in the instructor copy only (the library's code, its walkthrough)
LIBRARY_NOTE = "*(The library's version is shown here in the instructor copy.)*"

# Ways a cell can print code: inspect's functions, IPython's %psource/%pfile/%pycat/%load and `obj??`, reading a file.
_SHOWS_CODE = re.compile(r"\b(?:getsource|getsourcelines|findsource|getblock)\b|%(?:psource|pfile|pycat|load)\b"
                         r"|^\s*(?:\?\?[\w.]+|[\w.]+\?\?)\s*$", re.M)
_READS_FILE = re.compile(r"\bopen\(|\bread_text\(|\bfrom_file\(|%(?:pycat|load)\b|^\s*!\s*(?:cat|less|head)\b", re.M)


def shown_references(source: str) -> list[str]:
    """The exercises whose reference solution the code cell ``source`` would print, in ``CHECKS`` order.

    A cell counts when it prints code (``inspect.getsource`` and friends, ``%psource``, ``%pfile``,
    ``%pycat``, ``%load``, ``obj??``) and names a reference — ``sft_loss``, ``AdaptiveKLController``, ... —
    anywhere (so a loop over several functions counts too), or shows a whole module that holds one
    (``getsource(rlhf_core.losses)``, ``%pfile rlhf_core.losses``, ``open(".../losses.py")``). Printing
    other code (``PPOTrainer.update``, a config) does not count, nor does calling a reference.
    """
    shows_code, reads_file = _SHOWS_CODE.search(source), _READS_FILE.search(source)
    if not (shows_code or reads_file):
        return []
    words = set(re.findall(r"[A-Za-z_]\w*", source))
    shown = []
    for exercise, (module, qualname) in REFERENCES.items():
        short = module.rsplit(".", 1)[1]                                        # "losses"
        module_shown = shows_code and re.search(
            rf"(?:getsource\w*\(|%p(?:source|file)|%load)\s*(?:[\w.]+\.)?{short}\s*(?:\)|$)", source, re.M)
        file_read = reads_file and re.search(rf"\b{short}\.py\b", source)
        if module_shown or file_read or (shows_code and qualname.split(".")[0] in words):
            shown.append(exercise)
    return shown


def _only_displays(source: str) -> bool:
    """Whether a cell only prints: it binds no name (an assignment, import, def or class) that later cells
    could need. IPython syntax (%magics, obj??) is not Python and counts as a display."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return True
    binds = (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.NamedExpr, ast.Import, ast.ImportFrom,
             ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Global, ast.Nonlocal)
    return not any(isinstance(node, binds) for node in ast.walk(tree))


def _library_source(cell, index: int) -> bool:
    """Whether ``cell`` belongs to the instructor copy only: tagged SOURCE_TAG, or a code cell that would
    print an exercise's reference solution (which must then do nothing else)."""
    if SOURCE_TAG in cell.get("metadata", {}).get("tags", []):
        return True
    if cell.get("cell_type") != "code":
        return False
    shown = shown_references(cell.get("source", ""))
    if shown and not _only_displays(cell.source):
        names = ", ".join(f"`{qualname}`" for qualname in (REFERENCES[e][1] for e in shown))
        raise ValueError(f"cell {index} prints the library's {names} (the solution of an exercise) and also "
                         "runs other code; put the display in a cell of its own, after the exercise, so that "
                         "student copies can leave it out.")
    return bool(shown)


def list_exercises(nb) -> list[tuple[int, str]]:
    """(cell index, title) of every code cell with a solution region."""
    return [(index, exercise_title(nb.cells, index)) for index, cell in enumerate(nb.cells) if _has_solution(cell)]


def make_student_notebook(nb, keep_solutions: bool = False):
    """A student copy of ``nb`` (which is not changed): solutions replaced by
    ``raise NotImplementedError(<title>)``, hidden tests removed, outputs and execution counts cleared.
    Cell metadata (nbgrader's included) is kept as it is.

    Cells of the instructor copy only are left out, each run of them replaced by one markdown note
    (LIBRARY_NOTE): cells tagged ``library-source``, and every code cell that would print the library's
    solution of an exercise (``shown_references``) — tagged or not. Such a cell must only print, so that
    leaving it out cannot break a later cell; one that also computes raises ValueError.

    ``keep_solutions=True`` leaves out only those cells and keeps everything else (solutions, hidden tests,
    outputs): the source folder for ``nbgrader generate_assignment``, which knows nothing of the tag.
    """
    from nbformat.v4 import new_markdown_cell

    student = copy.deepcopy(nb)
    cells = []
    for index, cell in enumerate(student.cells):
        if _library_source(cell, index):
            if not (cells and cells[-1].cell_type == "markdown" and cells[-1].source == LIBRARY_NOTE):
                note = new_markdown_cell(LIBRARY_NOTE)   # one note for a run of left-out cells
                if "id" in cell:
                    note.id = cell.id                    # the first left-out cell's id: stable across copies
                else:
                    del note["id"]                       # a notebook from before cell ids (nbformat < 4.5)
                cells.append(note)
            continue
        if cell.cell_type == "code" and not keep_solutions:
            try:
                cell.source = strip_solutions(cell.source, exercise_title(nb.cells, index))
            except ValueError as error:
                raise ValueError(f"cell {index}: {error}") from None
            cell.outputs = []
            cell.execution_count = None
        cells.append(cell)
    student.cells = cells
    return student


def _write_atomically(nb, path: Path) -> None:
    import nbformat

    with atomic_file(path) as file:
        nbformat.write(nb, file)


def _notebooks(src: Path) -> list[Path]:
    if not src.is_dir():
        raise SystemExit(f"error: {src} is not a folder of notebooks.")
    return sorted(src.glob("*.ipynb"))


def main(argv: list[str] | None = None) -> int:
    import nbformat

    parser = argparse.ArgumentParser(prog="python -m rlhf_core.notebook.exercises",
                                     description="Student copies of the course notebooks (nbgrader markers).")
    commands = parser.add_subparsers(dest="command", required=True)
    student = commands.add_parser("student", help="write student copies: solutions stripped, outputs cleared, "
                                                  "the library's code of exercised functions left out")
    student.add_argument("src", type=Path, help="folder of solution notebooks")
    student.add_argument("out", type=Path, help="folder for the student copies (not SRC)")
    student.add_argument("--keep-solutions", action="store_true",
                         help="only leave out the library's code: a source folder for nbgrader generate_assignment")
    listing = commands.add_parser("list", help="print the exercises found: notebook, cell index, title")
    listing.add_argument("src", type=Path)
    args = parser.parse_args(argv)

    paths = _notebooks(args.src)
    if args.command == "list":
        for path in paths:
            for index, title in list_exercises(nbformat.read(path, as_version=4)):
                print(f"{path.name}\tcell {index}\t{title}")
        return 0

    if args.out.resolve() == args.src.resolve():
        raise SystemExit("error: OUT must differ from SRC, or the solutions would be overwritten.")
    args.out.mkdir(parents=True, exist_ok=True)
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        try:
            student = make_student_notebook(nb, keep_solutions=args.keep_solutions)
        except ValueError as error:
            raise SystemExit(f"error: {path.name}: {error}") from None
        _write_atomically(student, args.out / path.name)
        left_out = len(nb.cells) - len(student.cells) + sum(c.source == LIBRARY_NOTE for c in student.cells)
        print(f"wrote {args.out / path.name} ({len(list_exercises(nb))} exercises)"
              + (f"; left out {left_out} cells of the library's solutions" if left_out else ""))
    return 0
