"""Exercise checks, and student copies of the notebooks.

Each ``check_*`` takes a student's function (for the KL controller, the class) with the same
signature as the reference in ``rlhf_core.losses`` and compares it with the reference on random
inputs (several seeds, ragged masks, large numbers at the padded positions) and on hand-made edge
cases. The probes run from the most specific to the most general, so the first one that fails names
the mistake; a correct implementation prints one line:

    >>> check_compute_gae(compute_gae)
    ✓ compute_gae matches the reference on 40 random batches

A wrong one raises ``AssertionError`` with a diagnosis, e.g. "off by one: δ_t uses V_{t+1}, the
value of the *next* token ...". ``tests/wrong_implementations.py`` holds the typical mistakes every
check must catch, and correct variants (loops, other vectorisations) every check must accept.

Exercise cells use nbgrader's markers, so instructors who use nbgrader can use the notebooks as they
are. A markdown header, the exercise cell, then a one-line check::

    ### Exercise — implement `compute_gae`
    > **Difficulty**: 🔴🔴🔴⚪⚪  **Importance**: 🔵🔵🔵🔵⚪  **Time**: ~15 minutes
    (what to do, the equations)

    def compute_gae(rewards, values, mask, gamma=1.0, lam=0.95):
        \"\"\"...\"\"\"
        ### BEGIN SOLUTION
        ...
        ### END SOLUTION

    check_compute_gae(compute_gae)

Student copies (solutions replaced by ``raise NotImplementedError("Exercise — implement ...")``,
hidden tests removed, outputs cleared, and every cell that would show the library's code of an
exercised function left out: see ``make_student_notebook``)::

    python -m rlhf_core.notebook.exercises student notebooks/ student_notebooks/
    python -m rlhf_core.notebook.exercises list notebooks/

Where things are, in the order a check is built:

- ``probes``: random inputs (``random_batch``), running the student's code safely, comparing.
- ``checks_sampling_sft_rm``: sampling at a temperature, the SFT loss, the reward model's ranking loss.
- ``checks_rl``: the RL reward with its KL penalty, the KL estimators, GAE, whitening.
- ``checks_ppo``: PPO's clipped policy and value losses, the adaptive KL controller.
- ``checks_evaluation``: the win rate with its interval, the KL of best-of-n.
- ``checks_beyond``: DPO's loss, the RLOO and GRPO advantages.
- ``references``: each exercise's check (``CHECKS``) and the library's solution (``REFERENCES``).
- ``student_copy``: the student copies and the command line (``__main__`` runs it).
"""

from .checks_beyond import check_dpo_loss, check_grpo_advantages, check_rloo_advantages
from .checks_evaluation import check_best_of_n_kl, check_win_rate
from .checks_ppo import check_kl_controller, check_ppo_policy_loss, check_value_loss
from .checks_rl import check_compute_gae, check_kl_per_token, check_rlhf_rewards, check_whiten
from .checks_sampling_sft_rm import check_ranking_loss, check_sft_loss, check_temperature_probs
from .probes import random_batch
from .references import CHECKS, REFERENCES, reference
from .student_copy import (GENERIC_TITLE, LIBRARY_NOTE, SOURCE_TAG, exercise_title, list_exercises, main,
                           make_student_notebook, shown_references, strip_solutions)

__all__ = [
    "check_temperature_probs",
    "check_sft_loss",
    "check_ranking_loss",
    "check_rlhf_rewards",
    "check_kl_per_token",
    "check_compute_gae",
    "check_whiten",
    "check_ppo_policy_loss",
    "check_value_loss",
    "check_kl_controller",
    "check_win_rate",
    "check_best_of_n_kl",
    "check_dpo_loss",
    "check_rloo_advantages",
    "check_grpo_advantages",
    "CHECKS",
    "REFERENCES",
    "reference",
    "random_batch",
    "strip_solutions",
    "shown_references",
    "exercise_title",
    "list_exercises",
    "make_student_notebook",
    "main",
    # the student copies' markers: the generic exercise title, the tag and the note of the instructor-only cells
    "GENERIC_TITLE",
    "SOURCE_TAG",
    "LIBRARY_NOTE",
]
