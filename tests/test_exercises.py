"""Tests for rlhf_core.notebook.exercises: the checks and the student copies.

Every check must accept the reference and the correct variants in ``wrong_implementations.CORRECT``,
and reject each of ``wrong_implementations.WRONG`` with *its* diagnosis (a regex on the message), so a
check that rejects for the wrong reason fails here too. The student-copy tests build a small
notebook, strip it with the command line, and run both versions in a real kernel.
"""

import json
import re
import subprocess
import sys

import nbclient
import nbformat
import pytest
import torch.nn.functional as F
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from rlhf_core import losses
from rlhf_core.notebook import exercises
from rlhf_core.evaluate import best_of_n_kl, win_rate
from tests.wrong_implementations import CHECK_NAMES, CORRECT, WRONG


def library_temperature_probs(logits, temperature):
    """The distribution `rlhf_core.models.sequences.generate` samples from (its `_next_token`, without the draw)."""
    if temperature <= 0:
        raise ValueError("temperature must be > 0 (use greedy=True for argmax decoding)")
    return F.softmax(logits.float() / temperature, dim=-1)


REFERENCES = {
    "temperature_probs": library_temperature_probs,
    "sft_loss": losses.sft_loss,
    "ranking_loss": losses.ranking_loss,
    "rlhf_rewards": losses.rlhf_rewards,
    "kl_per_token": losses.kl_per_token,
    "compute_gae": losses.compute_gae,
    "whiten": losses.whiten,
    "ppo_policy_loss": losses.ppo_policy_loss,
    "value_loss": losses.value_loss,
    "kl_controller": losses.AdaptiveKLController,
    "win_rate": win_rate,
    "best_of_n_kl": best_of_n_kl,
    "dpo_loss": losses.dpo_loss,
    "rloo_advantages": losses.rloo_advantages,
    "grpo_advantages": losses.grpo_advantages,
}


def _params(table):
    def name(item):
        return (item[0] if isinstance(item, tuple) else item).__name__
    return [pytest.param(check, item, id=f"{check}-{name(item)}") for check in CHECK_NAMES for item in table[check]]


# --------------------------------------------------------------------------------------------------
# The checks
# --------------------------------------------------------------------------------------------------

def test_every_check_has_a_reference_and_a_table_entry():
    assert set(exercises.CHECKS) == set(REFERENCES) == set(CHECK_NAMES)


@pytest.mark.parametrize("check", CHECK_NAMES)
def test_check_accepts_the_reference(check, capsys):
    exercises.CHECKS[check](REFERENCES[check])
    printed = capsys.readouterr().out
    assert printed.startswith("✓ ") and printed.count("\n") == 1, printed


@pytest.mark.parametrize("check, fn", _params(CORRECT))
def test_check_accepts_a_correct_variant(check, fn, capsys):
    exercises.CHECKS[check](fn)
    assert capsys.readouterr().out.startswith("✓ ")


@pytest.mark.parametrize("check, wrong", _params(WRONG))
def test_check_rejects_a_wrong_implementation_with_its_diagnosis(check, wrong, capsys):
    fn, diagnosis = wrong
    with pytest.raises(AssertionError) as caught:
        exercises.CHECKS[check](fn)
    assert re.search(diagnosis, str(caught.value)), (
        f"{fn.__name__} was rejected for another reason:\n  {caught.value}\n"
        f"expected a message matching {diagnosis!r}")
    assert "✓" not in capsys.readouterr().out


def _stub(check):
    """What a student copy holds before the student writes anything."""
    if check == "kl_controller":
        class Stub:
            def __init__(self, init_kl_coef, target, horizon):
                self.value = init_kl_coef

            def update(self, current_kl, n_steps):
                raise NotImplementedError("Exercise — implement the adaptive KL controller")
        return Stub

    def stub(*args, **kwargs):
        raise NotImplementedError(f"Exercise — implement `{check}`")
    return stub


@pytest.mark.parametrize("check", CHECK_NAMES)
def test_an_untouched_exercise_says_not_implemented_yet(check):
    with pytest.raises(AssertionError, match=r"not implemented yet \(Exercise — implement .*\): replace the "
                                             r"`raise NotImplementedError`"):
        exercises.CHECKS[check](_stub(check))


def test_an_exception_in_the_students_code_names_the_input():
    def crashes(rewards, values, mask, gamma=1.0, lam=0.95):
        raise RuntimeError("shape mismatch in my loop")
    with pytest.raises(AssertionError, match=r"compute_gae raised RuntimeError on a random batch: shape mismatch"):
        exercises.check_compute_gae(crashes)


def test_the_student_cannot_spoil_the_inputs_of_later_probes():
    """Modifying the inputs in place (a common shortcut) must not change what the check compares."""
    def in_place(rewards, values, mask, gamma=1.0, lam=0.95):
        rewards[~mask] = 0.0
        values[~mask] = 0.0
        return losses.compute_gae(rewards, values, mask, gamma, lam)
    exercises.check_compute_gae(in_place)


def test_random_batch_is_ragged_with_garbage_at_padding():
    batch = exercises.random_batch(0)
    lengths = batch["mask"].sum(1)
    assert lengths[0] == batch["mask"].shape[1] and lengths[1] == 1
    assert (batch["mask"][:, 1:] <= batch["mask"][:, :-1]).all()             # a prefix per row
    assert (batch["values"][~batch["mask"]].abs() >= 10).all()
    other = exercises.random_batch(0, garbage=1)
    assert (other["values"][batch["mask"]] == batch["values"][batch["mask"]]).all()
    assert (other["values"][~batch["mask"]] != batch["values"][~batch["mask"]]).all()


def test_the_temperature_reference_is_the_distribution_generate_samples_from():
    """`_next_token` returns the log-prob of the sampled token under the scaled distribution: it must agree."""
    import torch

    from rlhf_core.models.sequences import _next_token

    logits = 3 * torch.randn(4, 17, generator=torch.Generator().manual_seed(0))
    for temperature in (0.3, 1.0, 2.0):
        token, logprob = _next_token(logits, temperature, 0, False, torch.Generator().manual_seed(1))
        probs = library_temperature_probs(logits, temperature)
        assert torch.allclose(probs.log().gather(1, token[:, None])[:, 0], logprob, atol=1e-5)


def test_kl_check_can_be_limited_to_k3(capsys):
    def only_k3(logprobs, ref_logprobs, estimator="k3"):
        assert estimator == "k3"
        log_r = ref_logprobs - logprobs
        return losses.kl_per_token(logprobs, ref_logprobs, "k3") + 0 * log_r
    exercises.check_kl_per_token(only_k3, estimators=("k3",))
    assert "k3" in capsys.readouterr().out


# --------------------------------------------------------------------------------------------------
# Student copies
# --------------------------------------------------------------------------------------------------

SOLUTION_CELL = '''def double(x):
    """Return 2·x."""
    ### BEGIN SOLUTION
    y = 2 * x
    return y
    ### END SOLUTION

print("defined")'''


def test_strip_solutions_keeps_the_code_around_the_markers():
    student = exercises.strip_solutions(SOLUTION_CELL, "Exercise — implement `double`")
    assert student == ('def double(x):\n    """Return 2·x."""\n'
                       '    raise NotImplementedError("Exercise — implement `double`")\n\nprint("defined")')
    compile(student, "<cell>", "exec")


def test_strip_solutions_quotes_the_title_and_handles_top_level_regions():
    source = '### BEGIN SOLUTION\nanswer = 42\n### END SOLUTION\nprint(answer)'
    student = exercises.strip_solutions(source, 'Exercise: say "hi" \\ bye')
    namespace = {}
    with pytest.raises(NotImplementedError, match=re.escape('Exercise: say "hi" \\ bye')):
        exec(student, namespace)
    assert student.endswith("print(answer)")
    assert exercises.strip_solutions("x = 1\n") == "x = 1\n"                  # no markers: unchanged


def test_strip_solutions_removes_hidden_tests():
    source = ("assert double(2) == 4\n### BEGIN HIDDEN TESTS\nassert double(-1) == -2\n"
              "### END HIDDEN TESTS\nprint('ok')")
    assert exercises.strip_solutions(source) == "assert double(2) == 4\nprint('ok')"


@pytest.mark.parametrize("source, problem", [
    ("### BEGIN SOLUTION\nx = 1", r"line 1: BEGIN SOLUTION has no matching END SOLUTION"),
    ("x = 1\n### END SOLUTION", r"line 2: END SOLUTION without a matching BEGIN SOLUTION"),
    ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION", r"inside the solution region"),
    ("### BEGIN HIDDEN TESTS\n### END SOLUTION", r"END SOLUTION without"),
])
def test_strip_solutions_rejects_unbalanced_markers(source, problem):
    with pytest.raises(ValueError, match=problem):
        exercises.strip_solutions(source)


def _nbgrader(grade_id, solution=False, grade=False):
    return {"nbgrader": {"grade": grade, "grade_id": grade_id, "locked": not solution, "schema_version": 3,
                         "solution": solution, "task": False}}


def _course_notebook():
    """A small notebook with the course's exercise format: header, exercise cell, one-line check."""
    return new_notebook(cells=[
        new_markdown_cell("# Whitening\n\nObjectives: ..."),
        new_code_cell("import torch\nfrom rlhf_core.notebook.exercises import check_whiten\nprint('setup done')"),
        new_markdown_cell("### Exercise — implement `whiten`\n\n"
                          "> **Difficulty**: 🔴🔴⚪⚪⚪  **Importance**: 🔵🔵🔵⚪⚪  **Time**: ~10 minutes\n\n"
                          "Standardise `x` over its valid entries (unbiased variance, eps = 1e-8)."),
        new_code_cell('def whiten(x, mask=None, shift_mean=True):\n'
                      '    """Mean 0, variance 1 over the valid entries; padding 0."""\n'
                      "    ### BEGIN SOLUTION\n"
                      "    mask = torch.ones_like(x, dtype=torch.bool) if mask is None else mask\n"
                      "    valid = x[mask]\n"
                      "    out = (x - valid.mean()) / torch.sqrt(valid.var() + 1e-8)\n"
                      "    out = out if shift_mean else out + valid.mean()\n"
                      "    return torch.where(mask, out, 0.0)\n"
                      "    ### END SOLUTION",
                      metadata=_nbgrader("whiten", solution=True)),
        new_code_cell("check_whiten(whiten)\n### BEGIN HIDDEN TESTS\n"
                      "assert whiten(torch.ones(3)).abs().max() == 0\n### END HIDDEN TESTS",
                      metadata=_nbgrader("check_whiten", grade=True)),
        new_code_cell("print('after the exercise')", execution_count=7,
                      outputs=[nbformat.v4.new_output("stream", name="stdout", text="after the exercise\n")]),
    ])


def test_make_student_notebook_strips_clears_and_keeps_metadata():
    nb = _course_notebook()
    original = json.dumps(nb, sort_keys=True)
    student = exercises.make_student_notebook(nb)
    assert json.dumps(nb, sort_keys=True) == original                        # the solution is untouched
    assert student.cells[3].source.endswith('    raise NotImplementedError("Exercise — implement `whiten`")')
    assert student.cells[3].source.startswith("def whiten(x, mask=None, shift_mean=True):\n    \"\"\"Mean 0")
    assert student.cells[4].source == "check_whiten(whiten)"
    assert all(c.outputs == [] and c.execution_count is None for c in student.cells if c.cell_type == "code")
    assert [c.metadata for c in student.cells] == [c.metadata for c in nb.cells]
    assert student.cells[2].source == nb.cells[2].source
    assert exercises.list_exercises(nb) == [(3, "Exercise — implement `whiten`")]


def test_exercise_title_without_an_exercise_header():
    nb = new_notebook(cells=[new_markdown_cell("## GAE"), new_code_cell("### BEGIN SOLUTION\n### END SOLUTION")])
    assert exercises.exercise_title(nb.cells, 1) == "Exercise: GAE"
    assert exercises.exercise_title(nb.cells[1:], 0) == exercises.GENERIC_TITLE


def test_student_copy_runs_up_to_the_check_and_stops_there(tmp_path, capsys, run_notebook):
    src, out = tmp_path / "solutions", tmp_path / "students"
    src.mkdir()
    nbformat.write(_course_notebook(), src / "03_whiten.ipynb")

    # The command line as a student types it (one subprocess: the `python -m` entry point), then in-process.
    listed = subprocess.run([sys.executable, "-m", "rlhf_core.notebook.exercises", "list", str(src)],
                            capture_output=True, text=True, check=True).stdout
    assert listed.strip() == "03_whiten.ipynb\tcell 3\tExercise — implement `whiten`"
    assert exercises.main(["student", str(src), str(out)]) == 0
    assert "03_whiten.ipynb (1 exercises)" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["03_whiten.ipynb"]      # no temporary files left

    solution = run_notebook(nbformat.read(src / "03_whiten.ipynb", as_version=4), tmp_path, timeout=120)
    assert "✓ whiten matches the reference" in solution.cells[4].outputs[0]["text"]

    student = nbformat.read(out / "03_whiten.ipynb", as_version=4)
    with pytest.raises(nbclient.exceptions.CellExecutionError) as stopped:
        run_notebook(student, tmp_path, timeout=120)
    assert stopped.value.ename == "AssertionError"
    assert "whiten is not implemented yet (Exercise — implement `whiten`)" in stopped.value.evalue
    assert "NotImplementedError" in stopped.value.traceback
    cells = student.cells
    assert cells[1].outputs[0]["text"] == "setup done\n" and cells[3].execution_count is not None
    assert cells[4].outputs[-1]["output_type"] == "error"
    assert cells[5].execution_count is None and cells[5].outputs == []       # it stopped at the check


def test_student_command_refuses_to_overwrite_the_solutions(tmp_path):
    nbformat.write(_course_notebook(), tmp_path / "a.ipynb")
    with pytest.raises(SystemExit, match="OUT must differ from SRC"):
        exercises.main(["student", str(tmp_path), str(tmp_path)])
    assert "BEGIN SOLUTION" in (tmp_path / "a.ipynb").read_text()


# --------------------------------------------------------------------------------------------------
# The table: how many mistakes each check is tested against
# --------------------------------------------------------------------------------------------------

def test_every_check_is_tested_against_enough_wrong_implementations():
    table = {check: (len(WRONG[check]), len(CORRECT[check])) for check in CHECK_NAMES}
    print("\n".join(f"{check:<16} {n_wrong:>2} wrong  {n_correct} correct" for check, (n_wrong, n_correct)
                    in table.items()))
    assert all(n_wrong >= 3 and n_correct >= 2 for n_wrong, n_correct in table.values()), table
