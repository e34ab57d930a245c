"""Student copies of the course notebooks: no reference solution visible, and each stops at its first exercise.

``python -m rlhf_core.notebook.exercises student`` must leave out every cell that would print the library's code of an
exercised function (``exercises.REFERENCES``), and the notebooks must show that code only after the exercise.
The tests build the student copies of the real notebooks and look for the reference bodies' lines in every
cell and output.

Running a student copy from the top to its first exercise means running most of the notebook (the exercises
sit at the end, after the training), minutes per notebook. So by default the kernel runs the set-up cell and
the first exercise with its check; the cells in between are the instructor copy's, unchanged but for the
left-out displays, which the student command only accepts when they bind no name (`pytest --nbval` runs them
in the instructor copies). ``RLHF_FULL_STUDENT_RUN=1`` runs every cell up to the first check instead (about
as long as the notebooks themselves: several minutes each on two cores).
"""

import ast
import inspect
import os
import textwrap
from pathlib import Path

import nbclient
import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from rlhf_core.notebook import exercises
from rlhf_core.notebook.colab import SETUP_CELL

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
WITH_EXERCISES = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")
                        if exercises.list_exercises(nbformat.read(p, as_version=4)))
FULL_RUN = os.environ.get("RLHF_FULL_STUDENT_RUN", "") not in ("", "0")


def body_lines(fn) -> list[str]:
    """The code of a reference's body — no signature, docstring or comments — one entry per line long
    enough (≥ 20 characters) to be distinctive: what a printed reference would give away."""
    source = textwrap.dedent(inspect.getsource(fn))
    node = ast.parse(source).body[0]
    body = node.body[1:] if ast.get_docstring(node) is not None else node.body
    lines = source.splitlines()[body[0].lineno - 1:node.end_lineno]
    code = [line.split("  #")[0].strip() for line in lines]
    return [line for line in code if len(line) >= 20 and not line.startswith("#") and line not in GENERIC]


GENERIC = {"with torch.no_grad():"}   # reference lines that any cell may use without giving a solution away


REFERENCE_LINES = {exercise: body_lines(exercises.reference(exercise)) for exercise in exercises.REFERENCES}


def notebook_text(nb) -> str:
    """Every cell's source and every output's text, HTML and traceback, as one string."""
    parts = []
    for cell in nb.cells:
        parts.append(cell.source)
        for output in cell.get("outputs", []):
            parts.append(output.get("text", ""))
            parts.extend(str(value) for value in output.get("data", {}).values())
            parts.extend([output.get("evalue", "")] + output.get("traceback", []))
    return "\n".join(parts)


def leaked(text: str) -> dict[str, list[str]]:
    """The reference lines found in ``text``, by exercise."""
    found = {exercise: [line for line in lines if line in text] for exercise, lines in REFERENCE_LINES.items()}
    return {exercise: lines for exercise, lines in found.items() if lines}


@pytest.fixture(scope="module")
def student_copies(tmp_path_factory):
    out = tmp_path_factory.mktemp("student_notebooks")
    assert exercises.main(["student", str(NOTEBOOKS), str(out)]) == 0
    return out


# --------------------------------------------------------------------------------------------------
# The rule
# --------------------------------------------------------------------------------------------------

SHORT_REFERENCES = {"best_of_n_kl": 2}   # a closed form: its guard and its one-line return are the whole body


def test_every_exercise_has_a_reference_with_a_recognisable_body():
    assert set(exercises.REFERENCES) == set(exercises.CHECKS)
    for exercise, lines in REFERENCE_LINES.items():
        assert len(lines) >= SHORT_REFERENCES.get(exercise, 3), (exercise, lines)
        assert leaked(inspect.getsource(exercises.reference(exercise))).keys() >= {exercise}   # the probe works


IN_LOSSES = [exercise for exercise, (module, _) in exercises.REFERENCES.items() if module == "rlhf_core.losses"]


@pytest.mark.parametrize("source, shown", [
    ("print(inspect.getsource(rlhf_core.losses.sft_loss))", ["sft_loss"]),
    ('display(Code(inspect.getsource(compute_gae), language="python"))', ["compute_gae"]),
    ("for fn in (losses.ranking_loss, losses.whiten):\n    print(inspect.getsource(fn))", ["ranking_loss", "whiten"]),
    ("print(inspect.getsource(AdaptiveKLController))", ["kl_controller"]),
    ("%psource rlhf_core.losses.ppo_policy_loss", ["ppo_policy_loss"]),
    ("rlhf_core.losses.value_loss??", ["value_loss"]),
    ("%pfile rlhf_core.evaluate", ["win_rate", "best_of_n_kl"]),
    ("print(inspect.getsource(rlhf_core.models.sequences._next_token))", ["temperature_probs"]),
    ("%psource rlhf_core.models.sequences", ["temperature_probs"]),
    ("print(inspect.getsource(best_of_n_kl))", ["best_of_n_kl"]),
    ("print(f'{best_of_n_kl(4):.2f}')  # calling it shows nothing", []),
    ("print(inspect.getsource(rlhf_core.losses))", IN_LOSSES),
    ("print(open('../rlhf_core/losses.py').read())", IN_LOSSES),
    ("print(inspect.getsource(PPOTrainer.update))", []),                       # other code may be shown
    ("print(inspect.getsource(rlhf_core.evaluate.perplexity))", []),
    ("advantages = rlhf_core.losses.whiten(advantages, mask)  # why??", []),    # using a reference is fine
    ("import inspect", []),
    ("# the loss of rlhf_core/losses.py\nloss = sft_loss(logits, ids, mask)", []),
    ("print(Path('../rlhf_core/evaluate.py').read_text())", ["win_rate", "best_of_n_kl"]),
])
def test_shown_references(source, shown):
    assert exercises.shown_references(source) == shown


def _instructor_notebook():
    return new_notebook(cells=[
        new_code_cell("import inspect\nimport rlhf_core.losses\nfrom rlhf_core.notebook.exercises import check_whiten"),
        new_markdown_cell("### Exercise — implement `whiten`"),
        new_code_cell("def whiten(x, mask=None, shift_mean=True):\n    ### BEGIN SOLUTION\n"
                      "    return rlhf_core.losses.whiten(x, mask, shift_mean)\n    ### END SOLUTION"),
        new_code_cell("check_whiten(whiten)"),
        new_markdown_cell("The library's version, line by line: ...", metadata={"tags": [exercises.SOURCE_TAG]}),
        new_code_cell("print(inspect.getsource(rlhf_core.losses.whiten))", metadata={"tags": [exercises.SOURCE_TAG]},
                      outputs=[nbformat.v4.new_output("stream", name="stdout", text="def whiten(...):\n")]),
        new_markdown_cell("And untagged:"),
        new_code_cell("print(inspect.getsource(rlhf_core.losses.whiten))"),
        new_code_cell("print('the end')"),
    ])


def test_student_copy_replaces_each_run_of_library_cells_with_one_note():
    nb = _instructor_notebook()
    student = exercises.make_student_notebook(nb)
    sources = [cell.source for cell in student.cells]
    assert sources[4] == exercises.LIBRARY_NOTE and student.cells[4].cell_type == "markdown"
    assert student.cells[4].id == nb.cells[4].id
    assert sources[5:] == ["And untagged:", exercises.LIBRARY_NOTE, "print('the end')"]
    assert "getsource" not in "".join(sources) and "line by line" not in "".join(sources)
    assert 'raise NotImplementedError("Exercise — implement `whiten`")' in sources[2]
    nbformat.validate(student)

    for_nbgrader = exercises.make_student_notebook(nb, keep_solutions=True)     # nbgrader's source folder
    assert "### BEGIN SOLUTION" in for_nbgrader.cells[2].source
    assert [cell.source for cell in for_nbgrader.cells][4:] == sources[4:]


def test_a_cell_that_shows_a_reference_and_computes_is_refused(tmp_path):
    nb = _instructor_notebook()
    nb.cells[7].source = "print(inspect.getsource(rlhf_core.losses.whiten))\nw = rlhf_core.losses.whiten(x)"
    with pytest.raises(ValueError, match=r"cell 7 prints the library's `whiten`.*a cell of its own"):
        exercises.make_student_notebook(nb)
    nbformat.write(nb, tmp_path / "a.ipynb")
    with pytest.raises(SystemExit, match=r"a\.ipynb: cell 7 prints the library's `whiten`"):
        exercises.main(["student", str(tmp_path), str(tmp_path / "out")])


# --------------------------------------------------------------------------------------------------
# The course's notebooks
# --------------------------------------------------------------------------------------------------

def test_notebooks_show_the_library_code_only_after_its_exercise():
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        cells = nbformat.read(path, as_version=4).cells
        checks = {exercise: index for index, cell in enumerate(cells) for exercise in exercises.CHECKS
                  if cell.cell_type == "code" and cell.source.startswith(f"check_{exercise}(")}
        for index, cell in enumerate(cells):
            if cell.cell_type != "code":
                continue
            for exercise in exercises.shown_references(cell.source):
                assert exercise in checks and checks[exercise] < index, \
                    f"{path.name} cell {index} shows the library's {exercise} before its exercise"
                assert exercises.SOURCE_TAG in cell.metadata.get("tags", []), f"{path.name} cell {index}"


def test_student_copies_show_no_reference_code(student_copies):
    assert sorted(p.name for p in student_copies.iterdir()) == sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
    assert len(WITH_EXERCISES) >= 4
    for path in sorted(student_copies.iterdir()):
        student = nbformat.read(path, as_version=4)
        assert leaked(notebook_text(student)) == {}, path.name
        assert all(exercises.SOURCE_TAG not in cell.metadata.get("tags", []) for cell in student.cells)
        assert "### BEGIN SOLUTION" not in notebook_text(student)


@pytest.mark.parametrize("name", WITH_EXERCISES)
def test_student_copy_stops_at_its_first_exercise(student_copies, name, run_notebook):
    instructor = nbformat.read(NOTEBOOKS / name, as_version=4)
    student = nbformat.read(student_copies / name, as_version=4)
    [(_, title), *_] = exercises.list_exercises(instructor)
    first = next(i for i, cell in enumerate(student.cells)
                 if cell.cell_type == "code" and f'raise NotImplementedError("{title}")' in cell.source)
    check = first + 1
    assert student.cells[check].source.startswith("check_"), "an exercise's check follows it"

    # Before the first exercise the student copy is the instructor copy, less the left-out displays.
    kept = [c.source for c in student.cells[:first] if c.source != exercises.LIBRARY_NOTE]
    assert kept == [c.source for c in instructor.cells if c.source in kept][:len(kept)]

    code = [i for i, cell in enumerate(student.cells[:first]) if cell.cell_type == "code"]
    assert student.cells[code[0]].source == SETUP_CELL, "the Colab cell comes first, then the set-up cell"
    run = list(range(check + 1)) if FULL_RUN else [*code[:2], first, check]   # Colab and set-up cells, the exercise
    nb = new_notebook(cells=[student.cells[i] for i in run], metadata=student.metadata)
    with pytest.raises(nbclient.exceptions.CellExecutionError) as stopped:
        run_notebook(nb, NOTEBOOKS)
    assert stopped.value.ename == "AssertionError"
    assert "is not implemented yet" in stopped.value.evalue and f"({title})" in stopped.value.evalue
    assert "replace the `raise NotImplementedError` with your code" in stopped.value.evalue
    assert nb.cells[-1].outputs[-1]["output_type"] == "error"                  # it stopped at the check
    assert all(o["output_type"] != "error" for cell in nb.cells[:-1] for o in cell.get("outputs", []))
    assert leaked(notebook_text(nb)) == {}


def test_the_exercise_title_is_the_last_header_of_its_cell():
    cells = [new_markdown_cell("## Exercise\n\nSome words.\n\n```python\n# not a header\n```\n\n"
                               "### Exercise — implement `win_rate`\n\nWrite it."),
             new_code_cell("### BEGIN SOLUTION\n### END SOLUTION")]
    assert exercises.exercise_title(cells, 1) == "Exercise — implement `win_rate`"
