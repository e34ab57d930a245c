"""RLHF in miniature: the InstructGPT recipe (SFT, reward model, PPO) on small GPT-2 models.

The library is thin: each algorithm once, in a short function named after the paper's term.
"""
from .data import load_split, read_jsonl
from .labeler import Judgement, SimulatedLabeler, measure_agreement
from .losses import (AdaptiveKLController, FixedKLController, compute_gae, dpo_loss, kl_per_token, masked_mean,
                     masked_var, ppo_policy_loss, ranking_loss, rlhf_rewards, sft_loss, value_loss, whiten)
from .models import OfflineError, load_base, save_checkpoint, set_threads
from .world import find_task, format_prompt
from .sequences import Rollout, generate, logprobs_from_logits, response_logprobs, tokenize_prompts
from .heads import RewardModel, ValueModel, normalise_reward, score_texts
from .evaluate import WinRate, evaluate_model, sample_responses, summarize, win_rate
from .plots import METRICS, LiveDashboard

set_threads()  # one thread count for every notebook and script: $RLHF_THREADS, else the cores available
