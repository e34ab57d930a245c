"""The metric registry: every name a training log or a plot uses, defined once, with its unit and colour.

A log line, a dashboard panel and a figure all say `objective/kl`; what that number is lives here, in `METRICS`,
and nowhere else (the notebooks show it with `metrics_table_markdown()`). The colours are fixed so a curve or a bar
means the same thing in every notebook: gold is gold, SFT is blue, PPO orange.

    METRICS                 name -> meaning, the one definition of every logged metric name
    UNITS                   name -> the y-axis label of its panel (the unit, where there is one)
    METRIC_COLORS           name -> colour, for metrics that share a panel
    MODEL_COLORS            model name -> colour in every comparison plot; model_color(name) for any name
    metrics_table_markdown  METRICS as a markdown table
    check_metric_names      warn about a name that is not in METRICS (usually a typo)
"""
from __future__ import annotations

import difflib
import warnings
from collections import OrderedDict
from collections.abc import Sequence

METRICS: "OrderedDict[str, str]" = OrderedDict(
    [
        ("objective/score", "reward-model score of the sampled responses, normalised so SFT "
                            "demonstrations score 0 (mean over episodes)"),
        ("objective/gold", "the simulated labeler's gold score of the same responses (mean over "
                           "episodes): what we actually want to go up"),
        ("objective/kl", "KL(π ‖ π_SFT) summed over response tokens, mean over episodes (nats)"),
        ("objective/kl_coef", "β, the KL penalty coefficient (moved by the adaptive KL "
                              "controller)"),
        ("objective/total", "score − β·KL: the objective PPO maximises (mean over episodes)"),
        ("objective/length", "response tokens per episode, EOS included (mean over episodes)"),
        ("policy/loss", "clipped surrogate loss max(−A·ρ, −A·clip(ρ)), mean over response tokens"),
        ("policy/clipfrac", "fraction of response tokens whose probability ratio was clipped "
                            "to [1 − ε, 1 + ε]"),
        ("policy/approx_kl", "estimated KL between the policy that sampled the batch and the "
                             "updated policy: how far one iteration moved it (nats per token)"),
        ("policy/entropy", "mean entropy of the policy's next-token distribution over response "
                           "tokens (nats)"),
        ("value/loss", "clipped value-function loss: squared error of values to returns"),
        ("value/clipfrac", "fraction of value predictions clipped to V_old ± ε_v"),
        ("value/explained_variance", "1 − Var(returns − values) / Var(returns) on the rollout, before the critic "
                                     "learns from it: 1 a perfect critic, 0 no better than a constant"),
        ("ppo/ptx_loss", "PPO-ptx: pretraining negative log-likelihood per token mixed into the "
                         "PPO loss (nats; absent when ptx is off)"),
        ("sft/loss", "SFT cross-entropy per response token on the training batch (nats)"),
        ("sft/val_loss", "SFT cross-entropy per response token on held-out demonstrations (nats)"),
        ("rm/loss", "reward-model ranking loss −log σ(r_better − r_worse), mean over pairs"),
        ("rm/accuracy", "fraction of the batch's comparison pairs the reward model orders like the labeler "
                        "(pairs of identical texts tie, so its ceiling is below 1)"),
        ("rm/heldout_accuracy", "held-out: agreement with the labeler's ranking on pairs of different texts"),
        ("rm/heldout_gold_accuracy", "held-out: agreement with the gold scores on pairs whose gold differs"),
        ("time/iteration", "wall-clock seconds per iteration (sampling, scoring and updates)"),
    ]
)

# y-axis label per metric (the unit where there is one).
UNITS = {
    "objective/score": "score", "objective/gold": "score", "objective/kl": "nats",
    "objective/kl_coef": "β", "objective/total": "score − β·KL", "policy/clipfrac": "fraction",
    "policy/approx_kl": "nats / token", "policy/entropy": "nats / token", "value/loss": "MSE",
    "value/clipfrac": "fraction", "value/explained_variance": "fraction of variance", "ppo/ptx_loss": "nats / token",
    "sft/loss": "nats / token", "sft/val_loss": "nats / token", "rm/loss": "nats / pair", "rm/accuracy": "fraction",
    "time/iteration": "seconds", "objective/length": "tokens", "policy/loss": "loss",
    "rm/heldout_accuracy": "fraction", "rm/heldout_gold_accuracy": "fraction",
}

# Fixed colours for metrics that share a panel, so "gold" is gold in every notebook.
METRIC_COLORS = {
    "objective/score": "#1f77b4", "objective/gold": "#c9a227", "objective/kl": "#9467bd",
    "objective/kl_coef": "#8c564b", "objective/total": "#d62728",
    "sft/loss": "#1f77b4", "sft/val_loss": "#ff7f0e",
}

# Consistent colours per model name in every comparison plot.
MODEL_COLORS = {
    "base": "#7f7f7f", "sft": "#1f77b4", "ppo": "#ff7f0e", "ppo_ptx": "#2ca02c",
    "dpo": "#9467bd", "best_of_n": "#8c564b", "gold": "#c9a227", "prompted_base": "#b0b0b0",
    "small_sft": "#17becf", "small_base": "#9edae5", "ppo_perfect": "#d62728",
}
# Other model names (and lines without a colour of their own) take these in turn.
FALLBACK_COLORS = ["#17becf", "#e377c2", "#bcbd22", "#d62728", "#393b79", "#637939"]


def metrics_table_markdown() -> str:
    """The METRICS definitions as a markdown table, for `display(Markdown(...))`."""
    rows = [f"| `{name}` | {meaning.replace('|', chr(92) + '|')} |"
            for name, meaning in METRICS.items()]
    return "\n".join(["| metric | meaning |", "|---|---|", *rows])


_ASSIGNED: dict[str, str] = {}  # model name -> the fallback colour it was given


def model_color(name: str) -> str:
    """Colour for a model name ('base' grey, 'sft' blue, 'ppo' orange, 'ppo_ptx' green ...)."""
    key = name.strip().lower().replace("-", "_").replace(" ", "_")
    if key in MODEL_COLORS:
        return MODEL_COLORS[key]
    # Other names get the next unused fallback colour, remembered for the session: distinct and consistent.
    if key not in _ASSIGNED:
        _ASSIGNED[key] = FALLBACK_COLORS[len(_ASSIGNED) % len(FALLBACK_COLORS)]
    return _ASSIGNED[key]


def check_metric_names(names: Sequence[str]) -> None:
    """Warn (do not fail) about names that are not in METRICS: usually a typo."""
    for name in names:
        if name not in METRICS:
            close = difflib.get_close_matches(name, list(METRICS), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            warnings.warn(f"{name!r} is not defined in rlhf_core.notebook.metrics.METRICS.{hint}",
                          stacklevel=3)


__all__ = ["METRICS", "UNITS", "METRIC_COLORS", "MODEL_COLORS", "FALLBACK_COLORS", "metrics_table_markdown",
           "model_color", "check_metric_names"]
