"""The course's static figures: one function per comparison a notebook makes, data in, a figure out.

Each returns a `CourseFigure` (it shows itself when it ends a cell; `display.save_figure` writes it), drawn in the
course's style with the same colour for a model, and for gold, in every figure (notebook.metrics).

    hist_better_worse        reward histograms of preferred vs rejected completions (notebook 03)
    bar_rates                grouped bars of e.g. hallucination / rudeness rates per model
    frontier_figure          the reward-KL frontier of a β sweep, one run ringed (notebook 06)
    best_of_n_figure         gold score of the best of n against n, one line per judge
    gold_kl_figure           gold score against KL: PPO's trajectories and best-of-n's points
    methods_frontier_figure  gold against KL, several methods on one set of axes (notebook 07, the DPO paper's Fig. 2)
    win_rate_figure          win rates with their 95 % intervals (InstructGPT Fig. 1 as a table of pairs)
    alignment_tax_figure     perplexity on pretraining text per model, and preference against it
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

from ..evaluate import WIN_RATE_PAIRS, best_of_n_kl
from .display import CourseFigure, FIGURE_STYLE, new_figure
from .metrics import FALLBACK_COLORS, METRIC_COLORS, MODEL_COLORS, model_color


def hist_better_worse(better_scores: Sequence[float], worse_scores: Sequence[float],
                      title: str | None = None, bins: int = 30) -> CourseFigure:
    """Histograms of reward-model scores for the preferred vs the rejected completion of pairs."""
    better = [float(s) for s in better_scores]
    worse = [float(s) for s in worse_scores]
    lo, hi = min(better + worse, default=0.0), max(better + worse, default=1.0)
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    edges = [lo + (hi - lo) * i / bins for i in range(bins + 1)]  # shared by both histograms
    fig = new_figure(figsize=(6.0, 3.4), layout="constrained")
    with matplotlib.rc_context(FIGURE_STYLE):
        ax = fig.add_subplot()
        for scores, label, color in ((better, "better (preferred)", "#2ca02c"),
                                     (worse, "worse (rejected)", "#d62728")):
            mean = sum(scores) / max(len(scores), 1)
            ax.hist(scores, bins=edges, alpha=0.55, color=color,
                    label=f"{label}: mean {mean:+.2f}, n={len(scores)}")
            ax.axvline(mean, color=color, lw=1.5, ls="--")
        ax.set_xlabel("reward-model score (normalised: SFT demonstrations = 0)")
        ax.set_ylabel("number of completions")
        ax.set_title(title or "Reward model: scores of better vs worse completions", loc="left")
        ax.legend(frameon=False)
    return fig


def bar_rates(rates: Mapping[str, Mapping[str, float]], title: str = "Rates per model",
              ylabel: str | None = None) -> CourseFigure:
    """Grouped bars: one group per rate name, one bar per model (consistent model colours).

    rates: {"sft": {"hallucination": 0.21, "rude": 0.05}, "ppo": {...}}. Fractions in [0, 1]
    are shown as percentages."""
    models = list(rates)
    rate_names = list(dict.fromkeys(r for m in models for r in rates[m]))
    as_percent = all(0.0 <= v <= 1.0 for m in models for v in rates[m].values())
    scale = 100.0 if as_percent else 1.0
    width = 0.8 / max(len(models), 1)
    n_bars = len(rate_names) * max(len(models), 1)
    fig = new_figure(figsize=(min(9.0, max(4.5, 0.8 * n_bars)), 3.4), layout="constrained")
    with matplotlib.rc_context(FIGURE_STYLE):
        ax = fig.add_subplot()
        for i, model in enumerate(models):
            xs = [j + (i - (len(models) - 1) / 2) * width for j in range(len(rate_names))]
            ys = [scale * rates[model].get(r, math.nan) for r in rate_names]
            bars = ax.bar(xs, ys, width=width * 0.95, color=model_color(model), label=model)
            ax.bar_label(bars, labels=["" if math.isnan(y) else (f"{y:.0f}%" if as_percent else f"{y:.2g}")
                                       for y in ys], fontsize=7, padding=1)
        ax.set_xticks(range(len(rate_names)), rate_names)
        ax.set_ylabel(ylabel or ("rate (% of responses)" if as_percent else "value"))
        ax.set_title(title, loc="left")
        ax.margins(y=0.15)
        ax.grid(axis="x", visible=False)
        ax.legend(frameon=False, ncols=min(len(models), 4))
    return fig


def frontier_figure(sweep: Sequence[Mapping[str, Any]], selected_index: int | None = None
                    ) -> CourseFigure:
    """Reward-KL frontier of a β sweep: RM score and gold score against KL, one point per run.

    sweep: dicts with "kl_coef" (β), "kl" (nats), "score", "gold". The selected run is ringed
    (artists with gid "selected"). With too little KL the policy barely moves; with too much the
    RM score keeps rising while gold falls (reward hacking)."""
    order = sorted(range(len(sweep)), key=lambda i: sweep[i]["kl"])
    kl = [float(sweep[i]["kl"]) for i in order]
    fig = new_figure(figsize=(6.0, 3.6), layout="constrained")
    with matplotlib.rc_context(FIGURE_STYLE):
        ax = fig.add_subplot()
        for key, label in (("score", "reward-model score"), ("gold", "gold score (labeler)")):
            ys = [float(sweep[i][key]) for i in order]
            ax.plot(kl, ys, "o-", color=METRIC_COLORS[f"objective/{key}"], ms=5, label=label)
        for i in order:
            ax.annotate(f"β={sweep[i]['kl_coef']:g}", (sweep[i]["kl"], sweep[i]["score"]),
                        textcoords="offset points", xytext=(4, 4), fontsize=7, color="#555")
        if selected_index is not None:
            run = sweep[selected_index]
            for key in ("score", "gold"):
                ax.plot([run["kl"]], [run[key]], "o", ms=13, mfc="none", mec="black", mew=2,
                        gid="selected")
            ax.set_title(f"selected β = {run['kl_coef']:g}: KL {run['kl']:.2f} nats, "
                         f"score {run['score']:+.2f}, gold {run['gold']:+.2f}", loc="left")
        else:
            ax.set_title("reward-KL frontier over a β sweep", loc="left")
        ax.axhline(0.0, color="#999", lw=0.8, ls="--")
        ax.set_xlabel("KL(π ‖ π_SFT) per episode (nats)")
        ax.set_ylabel("score (SFT demonstrations = 0)")
        ax.legend(frameon=False, loc="best")
    return fig


def best_of_n_figure(curves: Mapping[str, Mapping[int, float]], title: str | None = None) -> CourseFigure:
    """Gold score of the best-of-n answer against n, one line per judge that picks it.

    curves: {"reward model": {1: 7.5, 2: 7.9, ...}, "labeler (perfect reward)": {...}}, as
    `evaluate.best_of_n_gold` returns them. A judge whose name contains "labeler" is drawn in the gold colour.
    The x axis is n on a log scale, each tick labelled with the KL of best-of-n to the sampling policy (at most
    log n − (n − 1)/n). The dashed line is n = 1: a plain sample."""
    if not curves or not all(curves.values()):
        raise ValueError("best_of_n_figure needs at least one judge, each with at least one n")
    ns = sorted({n for curve in curves.values() for n in curve})
    fig = new_figure(figsize=(6.0, 3.4), layout="constrained")
    with matplotlib.rc_context(FIGURE_STYLE):
        ax = fig.add_subplot()
        for i, (name, curve) in enumerate(curves.items()):
            xs = sorted(curve)
            color = MODEL_COLORS["gold"] if "labeler" in name else FALLBACK_COLORS[i % len(FALLBACK_COLORS)]
            ax.plot(xs, [curve[n] for n in xs], "o-", color=color, ms=5, label=name)
        first = next(iter(curves.values()))
        if 1 in first:
            ax.axhline(first[1], color="#555", lw=1, ls="--", label="one sample (n = 1)")
        ax.set_xscale("log", base=2)
        ax.set_xticks(ns, [f"{n}\n{best_of_n_kl(n):.2f}" for n in ns])
        ax.minorticks_off()
        ax.set_xlabel("n answers to pick from  (below: KL to the sampling policy, at most, in nats)")
        ax.set_ylabel("gold score of the pick (0–10)")
        ax.set_title(title or "Best-of-n: the answer a judge picks, scored by the labeler", loc="left")
        ax.legend(frameon=False, loc="best")
    return fig


def gold_kl_figure(runs: Mapping[str, Mapping[str, Sequence[float]]],
                   points: Mapping[str, Mapping[float, float]] | None = None, title: str | None = None
                   ) -> CourseFigure:
    """Gold score against KL to the SFT model: how much gold each method buys per nat it moves.

    runs:   name -> a PPO history (its "objective/kl" and "objective/gold" per iteration: a trajectory on the
            training batches, drawn as a line that ends in a dot)
    points: name -> {KL: gold} measured elsewhere (e.g. best-of-n at its KL bound, on held-out prompts), drawn
            dashed with markers. A name containing "labeler" is drawn in the gold colour."""
    if not runs and not points:
        raise ValueError("gold_kl_figure needs at least one run or one set of points")
    fig = new_figure(figsize=(6.0, 3.6), layout="constrained")
    with matplotlib.rc_context(FIGURE_STYLE):
        ax = fig.add_subplot()
        run_colors = [FALLBACK_COLORS[(i + 3) % len(FALLBACK_COLORS)] for i in range(len(runs))]
        for color, (name, history) in zip(run_colors, runs.items()):
            kl, gold = list(history["objective/kl"]), list(history["objective/gold"])
            ax.plot(kl, gold, "-", color=color, lw=1.2, alpha=0.8, label=f"{name} (training batches)")
            ax.plot(kl[-1:], gold[-1:], "o", color=color, ms=6)
        palette = [c for c in FALLBACK_COLORS if c not in run_colors] or FALLBACK_COLORS  # points unlike the runs
        for i, (name, curve) in enumerate((points or {}).items()):
            xs = sorted(curve)
            color = MODEL_COLORS["gold"] if "labeler" in name else palette[i % len(palette)]
            ax.plot(xs, [curve[x] for x in xs], "s--", color=color, ms=5, label=name)
        ax.set_xlabel("KL(π ‖ π_SFT) per response (nats)")
        ax.set_ylabel("gold score (0–10)")
        ax.set_title(title or "Gold bought per nat of KL", loc="left")
        ax.legend(frameon=False, loc="best")
    return fig


def methods_frontier_figure(points: Sequence[Mapping[str, Any]], shown: Sequence[str] | None = None,
                            selected: int | None = None, sft_gold: float | None = None) -> CourseFigure:
    """Gold score against KL(π ‖ π_SFT), several methods on one set of axes: the DPO paper's Fig. 2 with the labeler
    as the judge.

    points: dicts with "method" (the series, e.g. "PPO", "DPO", "best-of-n, reward model"), "label" (the point's
            setting, e.g. "β = 0.1" or "n = 4"), "kl" (nats per response) and "gold", optionally "gold_ci" (the
            half-width of its 95 % interval, drawn as an error bar). A method's points are joined in order of KL.
    shown:  the methods to draw (None: all); selected: the index of a point to ring (gid "selected");
    sft_gold: a dashed line at SFT's gold score, the point every method starts from.
    A method whose name contains "labeler" is drawn in the gold colour (a ceiling no reward model can give)."""
    points = list(points)
    methods = list(dict.fromkeys(p["method"] for p in points))
    shown = methods if shown is None else [m for m in methods if m in set(shown)]
    fig = new_figure(figsize=(7.0, 4.0), layout="constrained")
    with matplotlib.rc_context(FIGURE_STYLE):
        ax = fig.add_subplot()
        for method in methods:
            if method not in shown:
                continue
            own = sorted((p for p in points if p["method"] == method), key=lambda p: p["kl"])
            color = MODEL_COLORS["gold"] if "labeler" in method else model_color(method)
            ax.errorbar([p["kl"] for p in own], [p["gold"] for p in own],
                        yerr=[p.get("gold_ci", 0.0) for p in own], fmt="o-", color=color, ms=5, capsize=3,
                        lw=1.4, label=method)
            for p in own:
                ax.annotate(p["label"], (p["kl"], p["gold"]), textcoords="offset points", xytext=(5, -10),
                            fontsize=7, color="#555")
        if sft_gold is not None:
            ax.axhline(sft_gold, color=MODEL_COLORS["sft"], lw=1, ls="--", label="SFT (KL 0)")
        if selected is not None:
            point = points[selected]
            ax.plot([point["kl"]], [point["gold"]], "o", ms=14, mfc="none", mec="black", mew=2, gid="selected")
            ax.set_title(f"{point['method']}, {point['label']}: gold {point['gold']:.2f} at {point['kl']:.2f} nats",
                         loc="left")
        else:
            ax.set_title("Gold score bought per nat of KL, method by method", loc="left")
        ax.set_xlabel("KL(π ‖ π_SFT) per response (nats; best-of-n: its bound log n − (n − 1)/n)")
        ax.set_ylabel("gold score on held-out prompts (0–10)")
        if shown or sft_gold is not None:
            ax.legend(frameon=False, loc="lower right")
    return fig


def _rate_and_interval(w: Any) -> tuple[float, float, float]:
    """(rate, low, high) of a WinRate or of its as_dict()."""
    if isinstance(w, Mapping):
        return float(w["rate"]), float(w["ci95"][0]), float(w["ci95"][1])
    return float(w.rate), float(w.low), float(w.high)


def win_rate_figure(win_rates: Mapping[str, Any], title: str = "How often the gold labeler prefers A to B"
                    ) -> CourseFigure:
    """One horizontal bar per comparison ("ppo_vs_sft" -> "ppo vs sft"), with its 95 % interval and the
    50 % line: InstructGPT Fig. 1 as a table of pairs. Values are WinRate objects or their as_dict(); each bar
    has the colour of model A (from evaluate.WIN_RATE_PAIRS, else the name before "_vs_")."""
    names = list(win_rates)
    fig = new_figure(figsize=(6.0, 0.45 * len(names) + 1.0), layout="constrained")
    with matplotlib.rc_context(FIGURE_STYLE):
        ax = fig.add_subplot()
        for row, name in enumerate(names):
            rate, low, high = _rate_and_interval(win_rates[name])
            winner = WIN_RATE_PAIRS.get(name, (name.split("_vs_")[0],))[0]
            ax.barh(row, 100 * rate, color=model_color(winner), height=0.6)
            ax.errorbar(100 * rate, row, xerr=[[100 * (rate - low)], [100 * (high - rate)]], fmt="none",
                        ecolor="black", capsize=3, lw=1)
            ax.text(100 * high + 1.5, row, f"{100 * rate:.0f} %", va="center", fontsize=8)
        ax.axvline(50, color="#555", lw=1, ls="--")
        ax.set_yticks(range(len(names)), [n.replace("_vs_", " vs ").replace("_", " ") for n in names])
        ax.invert_yaxis()
        ax.set_xlim(0, 110)
        ax.set_xlabel("win rate of A over B (%, ties count half; bars: 95 % interval)")
        ax.set_title(title, loc="left")
        ax.grid(axis="y", visible=False)
    return fig


def alignment_tax_figure(perplexities: Mapping[str, float], win_vs_sft: Mapping[str, Any] | None = None
                         ) -> CourseFigure:
    """The alignment tax: perplexity on held-out pretraining text per model (left), and, given each model's
    win rate over SFT, preference against perplexity (right) — PPO-ptx should sit left of PPO at equal height."""
    names = list(perplexities)
    panels = 2 if win_vs_sft else 1
    fig = new_figure(figsize=(4.2 * panels, 3.2), layout="constrained")
    with matplotlib.rc_context(FIGURE_STYLE):
        ax = fig.add_subplot(1, panels, 1)
        bars = ax.bar(range(len(names)), [perplexities[n] for n in names],
                      color=[model_color(n) for n in names])
        ax.bar_label(bars, fmt="%.3f", fontsize=7, padding=1)
        ax.set_ylim(1.0, max(perplexities.values()) * 1.03)  # perplexity 1 is a perfect prediction
        ax.set_xticks(range(len(names)), names)
        ax.set_ylabel("perplexity on held-out pretraining text")
        ax.set_title("alignment tax: lower is better", loc="left")
        ax.grid(axis="x", visible=False)
        if win_vs_sft:
            ax2 = fig.add_subplot(1, panels, 2)
            for name, w in win_vs_sft.items():
                rate, lo, hi = _rate_and_interval(w)
                ax2.errorbar(perplexities[name], 100 * rate, yerr=[[100 * (rate - lo)], [100 * (hi - rate)]],
                             fmt="o", color=model_color(name), capsize=3, label=name)
            ax2.axhline(50, color="#555", lw=1, ls="--")
            ax2.set_xlabel("perplexity (lower: less tax)")
            ax2.set_ylabel("win rate over SFT (%)")
            ax2.set_title("preference against tax", loc="left")
            ax2.legend(frameon=False)
    return fig


__all__ = ["hist_better_worse", "bar_rates", "frontier_figure", "best_of_n_figure", "gold_kl_figure",
           "methods_frontier_figure", "win_rate_figure", "alignment_tax_figure"]
