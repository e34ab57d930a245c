"""RLHF in miniature: the InstructGPT recipe (SFT, reward model, PPO) on small GPT-2 models.

The library is thin: each algorithm once, in a short function named after the paper's term. Its layers, bottom
first: common → world → models → algorithms (losses, evaluate) → stages → notebook → pipeline (README,
"The library"). The names a student needs most are importable from here.
"""
from .evaluate import WinRate, evaluate_model, summarize, win_rate
from .losses import (AdaptiveKLController, FixedKLController, compute_gae, dpo_loss, entropy, kl_per_token,
                     masked_mean, masked_var, ppo_policy_loss, ranking_loss, rlhf_rewards, sft_loss, value_loss, whiten)
from .models.heads import RewardModel, ValueModel, normalise_reward, score_texts
from .models.loading import OfflineError, load_base, save_checkpoint, set_threads
from .models.sequences import (Rollout, generate, logprobs_from_logits, response_logprobs, sample_responses,
                               tokenize_prompts)
from .notebook.dashboard import LiveDashboard
from .notebook.metrics import METRICS
from .world.data import load_split, read_jsonl
from .world.labeler import Judgement, SimulatedLabeler, measure_agreement
from .world.tasks import find_task, format_prompt

__all__ = [
    "load_split", "read_jsonl", "find_task", "format_prompt", "Judgement", "SimulatedLabeler", "measure_agreement",
    "OfflineError", "load_base", "save_checkpoint", "set_threads",
    "Rollout", "generate", "logprobs_from_logits", "response_logprobs", "sample_responses", "tokenize_prompts",
    "RewardModel", "ValueModel", "normalise_reward", "score_texts",
    "AdaptiveKLController", "FixedKLController", "compute_gae", "dpo_loss", "entropy", "kl_per_token", "masked_mean",
    "masked_var", "ppo_policy_loss", "ranking_loss", "rlhf_rewards", "sft_loss", "value_loss", "whiten",
    "WinRate", "evaluate_model", "summarize", "win_rate", "METRICS", "LiveDashboard",
]

set_threads()  # one thread count for every notebook and script: $RLHF_THREADS, else the cores available
