"""Each exercise by name: the check that tests a student's version (``CHECKS``) and the library's code that solves
it (``REFERENCES``, found by ``reference``).

The student copies use ``REFERENCES`` to leave out every cell that would print a solution
(``student_copy.shown_references``); ``tests/test_student_copies.py`` keeps both tables on the same exercises.
"""

from __future__ import annotations

import importlib
from typing import Callable

from .checks_beyond import check_dpo_loss, check_grpo_advantages, check_rloo_advantages
from .checks_evaluation import check_best_of_n_kl, check_win_rate
from .checks_ppo import check_kl_controller, check_ppo_policy_loss, check_value_loss
from .checks_rl import check_compute_gae, check_kl_per_token, check_rlhf_rewards, check_whiten
from .checks_sampling_sft_rm import check_ranking_loss, check_sft_loss, check_temperature_probs


CHECKS: dict[str, Callable] = {
    "temperature_probs": check_temperature_probs,
    "sft_loss": check_sft_loss,
    "ranking_loss": check_ranking_loss,
    "rlhf_rewards": check_rlhf_rewards,
    "kl_per_token": check_kl_per_token,
    "compute_gae": check_compute_gae,
    "whiten": check_whiten,
    "ppo_policy_loss": check_ppo_policy_loss,
    "value_loss": check_value_loss,
    "kl_controller": check_kl_controller,
    "win_rate": check_win_rate,
    "best_of_n_kl": check_best_of_n_kl,
    "dpo_loss": check_dpo_loss,
    "rloo_advantages": check_rloo_advantages,
    "grpo_advantages": check_grpo_advantages,
}


# The library's code that solves each exercise: (module, qualified name). A student copy must never show it.
REFERENCES: dict[str, tuple[str, str]] = {
    "temperature_probs": ("rlhf_core.models.sequences", "_next_token"),            # divides by T, softmax, samples
    "sft_loss": ("rlhf_core.losses", "sft_loss"),
    "ranking_loss": ("rlhf_core.losses", "ranking_loss"),
    "rlhf_rewards": ("rlhf_core.losses", "rlhf_rewards"),
    "kl_per_token": ("rlhf_core.losses", "kl_per_token"),
    "compute_gae": ("rlhf_core.losses", "compute_gae"),
    "whiten": ("rlhf_core.losses", "whiten"),
    "ppo_policy_loss": ("rlhf_core.losses", "ppo_policy_loss"),
    "value_loss": ("rlhf_core.losses", "value_loss"),
    "kl_controller": ("rlhf_core.losses", "AdaptiveKLController.update"),   # the exercise writes `update`
    "win_rate": ("rlhf_core.evaluate", "win_rate"),
    "best_of_n_kl": ("rlhf_core.evaluate", "best_of_n_kl"),
    "dpo_loss": ("rlhf_core.losses", "dpo_loss"),
    "rloo_advantages": ("rlhf_core.losses", "rloo_advantages"),
    "grpo_advantages": ("rlhf_core.losses", "grpo_advantages"),
}


def reference(exercise: str) -> Callable:
    """The library's function that solves ``exercise`` (a key of ``CHECKS``)."""
    module, qualname = REFERENCES[exercise]
    found = importlib.import_module(module)
    for name in qualname.split("."):
        found = getattr(found, name)
    return found
