"""Live plots and widgets: watch training move, then poke at the results.

Everything here works in two worlds with the same calls:

* in a Jupyter kernel, `LiveDashboard` redraws one output area in place every iteration and the
  widgets are live (`ipywidgets`);
* in scripts, tests and CI there is no front end: the dashboard only records its history, the
  plotting functions return static matplotlib figures, and every widget still carries a static
  HTML snapshot of its first state, so a reader of a saved notebook sees something.

Figures are built with `matplotlib.figure.Figure` (Agg canvas), never through `pyplot`: nothing
opens a window, nothing blocks, nothing piles up in `plt.get_fignums()`, and Jupyter's inline
backend does not print a second copy at the end of a cell. A figure shows itself in a notebook
when it is the last expression of a cell (`_repr_png_`).

Widget callbacks are plain functions of data that return HTML strings or figures
(`render_samples_html`, `render_scores_html`, `frontier_figure`); the widgets are a thin layer.

    METRICS                 name -> meaning, the one definition of every logged metric name
    LiveDashboard           live small-multiples during training; static figure afterwards
    plot_history            static figure of a history (dict of lists, or list of dicts)
    sample_browser          slider over PPO iterations -> that iteration's samples
    text_scorer             type a response, see the reward model's and the labeler's scores
    beta_slider             slider over a β sweep -> the reward-KL frontier and that run's samples
    frontier_explorer       methods on/off on the gold-KL frontier -> a point's samples (notebook 07)
    hist_better_worse       reward histograms of preferred vs rejected completions
    bar_rates               grouped bars of e.g. hallucination / rudeness rates per model
"""

from __future__ import annotations

import base64
import difflib
import html
import io
import math
import numbers
import os
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.layout_engine import ConstrainedLayoutEngine

# ---------------------------------------------------------------------------------------------
# Metric names: defined once, used by every log line and every plot.
# ---------------------------------------------------------------------------------------------

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
_UNITS = {
    "objective/score": "score", "objective/gold": "score", "objective/kl": "nats",
    "objective/kl_coef": "β", "objective/total": "score − β·KL", "policy/clipfrac": "fraction",
    "policy/approx_kl": "nats / token", "policy/entropy": "nats / token", "value/loss": "MSE",
    "value/clipfrac": "fraction", "ppo/ptx_loss": "nats / token", "sft/loss": "nats / token",
    "sft/val_loss": "nats / token", "rm/loss": "nats / pair", "rm/accuracy": "fraction",
    "time/iteration": "seconds", "objective/length": "tokens", "policy/loss": "loss",
    "rm/heldout_accuracy": "fraction", "rm/heldout_gold_accuracy": "fraction",
}

# Fixed colours for metrics that share a panel, so "gold" is gold in every notebook.
_METRIC_COLORS = {
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
_FALLBACK_COLORS = ["#17becf", "#e377c2", "#bcbd22", "#d62728", "#393b79", "#637939"]

_STYLE = {
    "font.size": 9, "axes.titlesize": 9, "axes.labelsize": 9, "legend.fontsize": 8,
    "xtick.labelsize": 8, "ytick.labelsize": 8, "axes.spines.top": False,
    "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3, "figure.dpi": 100,
    "savefig.dpi": 100,
}


def metrics_table_markdown() -> str:
    """The METRICS definitions as a markdown table, for `display(Markdown(...))`."""
    rows = [f"| `{name}` | {meaning.replace('|', chr(92) + '|')} |"
            for name, meaning in METRICS.items()]
    return "\n".join(["| metric | meaning |", "|---|---|", *rows])


def model_color(name: str) -> str:
    """Colour for a model name ('base' grey, 'sft' blue, 'ppo' orange, 'ppo_ptx' green ...)."""
    key = name.strip().lower().replace("-", "_").replace(" ", "_")
    if key in MODEL_COLORS:
        return MODEL_COLORS[key]
    # Other names get the next unused fallback colour, remembered for the session: distinct and consistent.
    if key not in _ASSIGNED:
        _ASSIGNED[key] = _FALLBACK_COLORS[len(_ASSIGNED) % len(_FALLBACK_COLORS)]
    return _ASSIGNED[key]


_ASSIGNED: dict[str, str] = {}


def _check_metric_names(names: Sequence[str]) -> None:
    """Warn (do not fail) about names that are not in METRICS: usually a typo."""
    for name in names:
        if name not in METRICS:
            close = difflib.get_close_matches(name, list(METRICS), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            warnings.warn(f"{name!r} is not defined in rlhf_core.plots.METRICS.{hint}",
                          stacklevel=3)


# ---------------------------------------------------------------------------------------------
# Front-end detection and rendering helpers
# ---------------------------------------------------------------------------------------------

def in_notebook() -> bool:
    """True inside a Jupyter kernel (notebook, Lab, nbval/nbclient); False in scripts/terminal."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


class CourseFigure(Figure):
    """A matplotlib Figure that shows itself as a PNG when it ends a notebook cell."""

    def _repr_png_(self) -> bytes:
        return figure_png(self, tight=True)


def _new_figure(**kwargs) -> CourseFigure:
    with matplotlib.rc_context(_STYLE):
        fig = CourseFigure(**kwargs)
    FigureCanvasAgg(fig)  # Agg canvas: render without any GUI backend
    return fig


def figure_png(fig: Figure, tight: bool = False, dpi: float | None = None) -> bytes:
    """Render a figure to PNG bytes with Agg (fast compression: this runs every iteration)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi or fig.dpi, bbox_inches="tight" if tight else None,
                pil_kwargs={"compress_level": 1})
    return buf.getvalue()


def _img_tag(png: bytes) -> str:
    return (f'<img style="max-width:100%" '
            f'src="data:image/png;base64,{base64.b64encode(png).decode()}"/>')


def save_figure(fig: Figure, path: str | os.PathLike) -> str:
    """Write `fig` to `path` atomically (temp file in the same folder, then rename).

    The format follows the extension (.png, .svg, .pdf). A reader never sees a half-written file,
    and a crash leaves no temp file behind."""
    from .files import atomic_file

    path = os.fspath(path)
    suffix = os.path.splitext(path)[1] or ".png"
    with atomic_file(path, "wb") as f:
        fig.savefig(f, format=suffix.lstrip("."), bbox_inches="tight")
    return path


def static_html(obj: Any) -> str:
    """HTML snapshot of a widget panel, figure or HTML-able object: what a static reader sees."""
    if hasattr(obj, "_static_html"):
        return obj._static_html()
    if isinstance(obj, Figure):
        return _img_tag(figure_png(obj, tight=True))
    if hasattr(obj, "_repr_html_"):
        return obj._repr_html_() or ""
    return f"<pre>{html.escape(str(obj))}</pre>"


def show(obj: Any) -> None:
    """Display a widget, figure or HTML in a notebook; do nothing in scripts and tests.

    Widgets from this module carry a static HTML snapshot in the same output, so a saved
    notebook opened without a kernel (or rendered on a website) still shows their first state."""
    if not in_notebook():
        return
    from IPython.display import HTML, Image, display

    if isinstance(obj, Figure) and not isinstance(obj, CourseFigure):
        display(Image(figure_png(obj, tight=True)))
    elif isinstance(obj, str):
        display(HTML(obj))
    else:
        display(obj)


# ---------------------------------------------------------------------------------------------
# Plain renderers (the widget callbacks): data in, HTML string out
# ---------------------------------------------------------------------------------------------

_TABLE_STYLE = ('style="border-collapse:collapse;font-size:12px;text-align:left;'
                'margin-top:4px"')
_CELL = 'style="border:1px solid #ddd;padding:3px 6px;vertical-align:top"'
_TEXT_CELL = ('style="border:1px solid #ddd;padding:3px 6px;vertical-align:top;'
              'white-space:pre-wrap;font-family:monospace;max-width:420px"')


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return html.escape(str(value))
    if isinstance(value, numbers.Integral):
        return str(value)
    return "nan" if math.isnan(value) else f"{float(value):+.3f}"


def render_samples_html(samples: Sequence[Sequence[Any]], max_rows: int | None = None,
                        max_chars: int = 400) -> str:
    """HTML table of samples: each a (prompt, response) or (prompt, response, extra_dict).

    Extra dicts (e.g. {"score": 0.4, "gold": 1.0}) become columns. All text is escaped."""
    samples = list(samples)[:max_rows] if max_rows else list(samples)
    if not samples:
        return "<p><i>no samples</i></p>"
    extra_keys: list[str] = []
    for sample in samples:
        for key in (sample[2] if len(sample) > 2 and sample[2] else {}):
            if key not in extra_keys:
                extra_keys.append(key)
    header = "".join(f"<th {_CELL}>{html.escape(h)}</th>"
                     for h in ["prompt", "response", *extra_keys])
    rows = []
    for sample in samples:
        prompt, response = (str(s) for s in sample[:2])
        extra = sample[2] if len(sample) > 2 and sample[2] else {}
        cells = [_shorten(prompt, max_chars), _shorten(response, max_chars)]
        text = "".join(f"<td {_TEXT_CELL}>{html.escape(c)}</td>" for c in cells)
        nums = "".join(f"<td {_CELL}>{_fmt(extra.get(k, ''))}</td>" for k in extra_keys)
        rows.append(f"<tr>{text}{nums}</tr>")
    return f"<table {_TABLE_STYLE}><tr>{header}</tr>{''.join(rows)}</table>"


def _shorten(text: str, max_chars: int) -> str:
    return text if len(text) <= max_chars else text[: max_chars - 1] + "…"


def render_scores_html(scores: Mapping[str, Any]) -> str:
    """HTML table of named scores, e.g. {"reward model": 0.3, "gold": 1.2, "helpful": "yes"}."""
    rows = "".join(f"<tr><th {_CELL}>{html.escape(str(k))}</th><td {_CELL}>{_fmt(v)}</td></tr>"
                   for k, v in scores.items())
    return f"<table {_TABLE_STYLE}>{rows}</table>"


# ---------------------------------------------------------------------------------------------
# Static figures
# ---------------------------------------------------------------------------------------------

def _as_columns(history: Mapping[str, Sequence] | Sequence[Mapping[str, Any]]) -> dict[str, list]:
    """Accept a dict of lists (LiveDashboard.history) or a list of log records (dicts)."""
    if isinstance(history, Mapping):
        cols = {k: list(v) for k, v in history.items()}
    else:
        records = list(history)
        keys = list(dict.fromkeys(k for r in records for k in r))
        cols = {k: [r.get(k, math.nan) for r in records] for k in keys}
    if "step" not in cols:
        n = max((len(v) for v in cols.values()), default=0)
        cols["step"] = list(range(n))
    return cols


def _panel_names(panel: str | Sequence[str]) -> tuple[str, ...]:
    return (panel,) if isinstance(panel, str) else tuple(panel)


def _grid(n_panels: int, ncols: int | None) -> tuple[int, int]:
    ncols = ncols or min(n_panels, 3)
    return math.ceil(n_panels / ncols), ncols


class _Panels:
    """One figure with a small-multiple axes per panel and one Line2D per metric (reused).

    Static mode autoscales each draw. Live mode (`live=True`) is built for redrawing every
    iteration on a slow CPU: the axes limits change only when the data outgrows them (x doubles,
    y refits to the data plus its trend), so most redraws restore a cached background (axes,
    ticks, labels) and draw just the lines and titles on top ("blitting"); a full draw (~5x the
    cost) happens a handful of times per run."""

    def __init__(self, panels, title=None, xlabel="iteration", ncols=None, live=False,
                 panel_size=(3.3, 2.3)):
        self.panels = [_panel_names(p) for p in panels]
        self.live = live
        nrows, ncols = _grid(len(self.panels), ncols)
        self.fig = _new_figure(figsize=(panel_size[0] * ncols, panel_size[1] * nrows + 0.4),
                               layout="none" if live else "constrained")
        # Live mode runs the layout by hand, only when the tick labels got wider.
        self._layout = ConstrainedLayoutEngine() if live else None
        self._tick_label_widths: tuple[int, ...] = ()
        with matplotlib.rc_context(_STYLE):
            axes = self.fig.subplots(nrows, ncols, squeeze=False).ravel()
            self.lines = [[] for _ in self.panels]  # per panel: one Line2D per metric
            self.titles = []                         # per panel: the title Text (latest values)
            for i, (ax, names) in enumerate(zip(axes, self.panels)):
                for j, name in enumerate(names):
                    (line,) = ax.plot([], [], color=_METRIC_COLORS.get(name, f"C{j}"), lw=1.5,
                                      ms=3, label=name, animated=live)
                    self.lines[i].append(line)
                if _has_zero_line(names):
                    ax.axhline(0.0, color="#999", lw=0.8, ls="--")  # SFT demonstrations = 0
                if len(names) > 1:
                    ax.legend(loc="best", framealpha=0.7, edgecolor="none")
                self.titles.append(ax.set_title(" · ".join(names), loc="left", animated=live))
                ax.set_ylabel(_UNITS.get(names[0], ""))
                ax.locator_params(nbins=4)  # fewer tick labels: text is most of a draw's cost
                if i >= len(self.panels) - ncols:
                    ax.set_xlabel(xlabel)
            for ax in axes[len(self.panels):]:
                ax.set_visible(False)
        self.axes = list(axes[: len(self.panels)])
        if title:
            self.fig.suptitle(title, fontsize=11)
        self._background = None  # live mode: the cached pixels of everything but lines/titles
        self.full_draws = 0      # live mode: how many redraws were not blits

    def set_data(self, cols: Mapping[str, Sequence]) -> None:
        x = list(cols.get("step", []))
        for ax, names, lines, title in zip(self.axes, self.panels, self.lines, self.titles):
            latest = []
            for name, line in zip(names, lines):
                y = list(cols.get(name, []))
                # Only the finite points: a metric logged at some steps (a validation loss per epoch) has NaN
                # in between, which would break every segment of its line.
                points = [(xi, yi) for xi, yi in zip(x, y) if yi is not None and math.isfinite(yi)]
                line.set_data([p[0] for p in points], [p[1] for p in points])
                line.set_marker("o" if len(points) <= 30 else "")
                value = _latest(y)
                label = name if len(names) == 1 else name.rsplit("/", 1)[-1]
                latest.append(label if value is None else f"{label} = {value:.3g}")
            title.set_text(" · ".join(latest))
            if not self.live:
                ax.relim()
                ax.autoscale_view()

    def live_png(self, cols: Mapping[str, Sequence]) -> bytes:
        """Live mode: update, redraw (blitting when the limits did not grow), encode PNG."""
        self.set_data(cols)
        canvas = self.fig.canvas
        if self._grow_limits(cols) or self._background is None:
            widths = tuple(max(map(len, ax.yaxis.major.formatter.format_ticks(
                ax.yaxis.get_majorticklocs())), default=0) for ax in self.axes)
            if widths != self._tick_label_widths:  # re-run the layout only when needed
                self._layout.execute(self.fig)
                self._tick_label_widths = widths
            canvas.draw()  # everything except the animated lines and titles
            self.full_draws += 1
            self._background = canvas.copy_from_bbox(self.fig.bbox)
        else:
            canvas.restore_region(self._background)
        for ax, lines, title in zip(self.axes, self.lines, self.titles):
            for artist in (*lines, title):
                ax.draw_artist(artist)
        return _canvas_png(canvas)

    def _grow_limits(self, cols: Mapping[str, Sequence]) -> bool:
        """Fit the limits when the data outgrew them. True when any limit changed.

        x doubles (O(log n) changes over a run). y is refitted when a curve leaves it, or when x
        doubled, to the data plus each curve's trend projected to the end of the x axis, so a
        steadily rising reward or KL does not force a full redraw every few iterations."""
        x = np.asarray(cols.get("step", []), dtype=float)
        if not np.isfinite(x).any():
            return False
        first, last = np.nanmin(x), np.nanmax(x)
        x0, x1 = self.axes[0].get_xlim()
        x_changed = self._background is None or first < x0 or last > x1
        if x_changed:
            span = 8.0
            while first + span < last:
                span *= 2.0
            for ax in self.axes:
                ax.set_xlim(first, first + span)
        x_end = self.axes[0].get_xlim()[1]
        changed = x_changed
        for ax, names in zip(self.axes, self.panels):
            ys = [np.asarray(cols.get(n, []), dtype=float) for n in names]
            finite = np.concatenate([y[np.isfinite(y)] for y in ys] + [np.zeros(0)])
            if finite.size == 0:
                continue
            lo, hi = finite.min(), finite.max()
            y0, y1 = ax.get_ylim()
            if x_changed or lo < y0 or hi > y1:
                ax.set_ylim(*_projected_ylim(x, ys, x_end, zero=_has_zero_line(names)))
                changed = True
        return changed


def _has_zero_line(names: Sequence[str]) -> bool:
    return "objective/score" in names or "objective/total" in names


def _projected_ylim(x: np.ndarray, ys: Sequence[np.ndarray], x_end: float, zero: bool
                    ) -> tuple[float, float]:
    """y-limits covering the data and each curve's trend (mean of the last half vs the first
    half) extended to x_end, capped at twice the data range, with a 10% margin."""
    lo, hi = math.inf, -math.inf
    for y in ys:
        ok = np.isfinite(y) & np.isfinite(x[: len(y)])
        xs, vals = x[: len(y)][ok], y[ok]
        if vals.size == 0:
            continue
        lo, hi = min(lo, vals.min()), max(hi, vals.max())
        if vals.size >= 4:
            half = vals.size // 2
            dx = xs[half:].mean() - xs[:half].mean()
            slope = (vals[half:].mean() - vals[:half].mean()) / dx if dx > 0 else 0.0
            reach = slope * (x_end - xs[-1])
            cap = 2.0 * (vals.max() - vals.min())
            hi = max(hi, vals.max() + min(max(reach, 0.0), cap))
            lo = min(lo, vals.min() + max(min(reach, 0.0), -cap))
    if zero:
        lo, hi = min(lo, 0.0), max(hi, 0.0)
    span = (hi - lo) or 0.2 * abs(hi) or 1.0
    return lo - 0.1 * span, hi + 0.1 * span


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _canvas_png(canvas: FigureCanvasAgg) -> bytes:
    """PNG of what the Agg canvas holds now, without drawing again (savefig would redraw)."""
    from PIL import Image  # matplotlib depends on Pillow

    image = Image.frombuffer("RGBA", canvas.get_width_height(), canvas.buffer_rgba())
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="png", compress_level=1)
    return buf.getvalue()


def _latest(values: Sequence[float]) -> float | None:
    for v in reversed(values):
        if _finite(v):
            return float(v)
    return None


def plot_history(history, panels, title: str | None = None, xlabel: str = "iteration",
                 ncols: int | None = None) -> CourseFigure:
    """Static small-multiples figure of a training history.

    history: dict of lists with a "step" key (LiveDashboard.history), or a list of log records
             (one dict per iteration, as in a JSONL log).
    panels:  metric names; a tuple puts several on one panel, e.g. ("objective/score",
             "objective/gold")."""
    grid = _Panels(panels, title=title, xlabel=xlabel, ncols=ncols)
    grid.set_data(_as_columns(history))
    return grid.fig


def hist_better_worse(better_scores: Sequence[float], worse_scores: Sequence[float],
                      title: str | None = None, bins: int = 30) -> CourseFigure:
    """Histograms of reward-model scores for the preferred vs the rejected completion of pairs."""
    better = [float(s) for s in better_scores]
    worse = [float(s) for s in worse_scores]
    lo, hi = min(better + worse, default=0.0), max(better + worse, default=1.0)
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    edges = [lo + (hi - lo) * i / bins for i in range(bins + 1)]  # shared by both histograms
    fig = _new_figure(figsize=(6.0, 3.4), layout="constrained")
    with matplotlib.rc_context(_STYLE):
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
    fig = _new_figure(figsize=(min(9.0, max(4.5, 0.8 * n_bars)), 3.4), layout="constrained")
    with matplotlib.rc_context(_STYLE):
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
    fig = _new_figure(figsize=(6.0, 3.6), layout="constrained")
    with matplotlib.rc_context(_STYLE):
        ax = fig.add_subplot()
        for key, label in (("score", "reward-model score"), ("gold", "gold score (labeler)")):
            ys = [float(sweep[i][key]) for i in order]
            ax.plot(kl, ys, "o-", color=_METRIC_COLORS[f"objective/{key}"], ms=5, label=label)
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
    from .evaluate import best_of_n_kl

    if not curves or not all(curves.values()):
        raise ValueError("best_of_n_figure needs at least one judge, each with at least one n")
    ns = sorted({n for curve in curves.values() for n in curve})
    fig = _new_figure(figsize=(6.0, 3.4), layout="constrained")
    with matplotlib.rc_context(_STYLE):
        ax = fig.add_subplot()
        for i, (name, curve) in enumerate(curves.items()):
            xs = sorted(curve)
            color = MODEL_COLORS["gold"] if "labeler" in name else _FALLBACK_COLORS[i % len(_FALLBACK_COLORS)]
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
    fig = _new_figure(figsize=(6.0, 3.6), layout="constrained")
    with matplotlib.rc_context(_STYLE):
        ax = fig.add_subplot()
        run_colors = [_FALLBACK_COLORS[(i + 3) % len(_FALLBACK_COLORS)] for i in range(len(runs))]
        for color, (name, history) in zip(run_colors, runs.items()):
            kl, gold = list(history["objective/kl"]), list(history["objective/gold"])
            ax.plot(kl, gold, "-", color=color, lw=1.2, alpha=0.8, label=f"{name} (training batches)")
            ax.plot(kl[-1:], gold[-1:], "o", color=color, ms=6)
        palette = [c for c in _FALLBACK_COLORS if c not in run_colors] or _FALLBACK_COLORS  # points unlike the runs
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
    fig = _new_figure(figsize=(7.0, 4.0), layout="constrained")
    with matplotlib.rc_context(_STYLE):
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
    from .evaluate import WIN_RATE_PAIRS

    names = list(win_rates)
    fig = _new_figure(figsize=(6.0, 0.45 * len(names) + 1.0), layout="constrained")
    with matplotlib.rc_context(_STYLE):
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
    fig = _new_figure(figsize=(4.2 * panels, 3.2), layout="constrained")
    with matplotlib.rc_context(_STYLE):
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


# ---------------------------------------------------------------------------------------------
# LiveDashboard
# ---------------------------------------------------------------------------------------------

class LiveDashboard:
    """Training curves that redraw in place in a notebook; a plain history recorder elsewhere.

        dash = LiveDashboard([("objective/score", "objective/gold"), "objective/kl",
                              "objective/kl_coef", "objective/total"], title="PPO")
        for it in range(n_iterations):
            stats = ppo_iteration(...)
            dash.update(it, stats, samples=[(prompt, response), ...])
        dash.close()                     # final static figure with every point

    In a kernel, the first update displays one output (figure + latest samples) and later ones
    replace it (`display_id`), every `every` updates — and only while redrawing has taken at most
    `max_overhead` of the wall time since the first update (None: always), so a fast loop (a reward
    model's steps) is not slowed by its own plot. Outside a kernel update() only records;
    `figure()` / `save(path)` draw the static figure. `history` is a dict of lists: "step" and
    one list per metric ever logged, aligned with "step" (NaN where a metric was missing).
    """

    def __init__(self, panels: Sequence[str | tuple[str, ...]], title: str | None = None,
                 every: int = 1, show_samples: bool = True, xlabel: str = "iteration",
                 max_samples: int = 4, live: bool | None = None, max_overhead: float | None = 0.1):
        self.panels = [p if isinstance(p, str) else tuple(p) for p in panels]
        _check_metric_names([n for p in self.panels for n in _panel_names(p)])
        self.title, self.every, self.xlabel = title, max(1, int(every)), xlabel
        self.show_samples, self.max_samples = show_samples, max_samples
        self.live = in_notebook() if live is None else live  # redraw in a notebook output?
        self.history: dict[str, list[float]] = {"step": []}
        self.samples: list[tuple] = []          # the latest samples passed to update()
        self.redraw_seconds: list[float] = []   # wall time of each live redraw
        self.max_overhead = max_overhead        # the largest share of wall time spent redrawing (None: any)
        self._started: float | None = None      # perf_counter() at the first update
        self._grid: _Panels | None = None       # the reused live figure
        self._handle = None                     # IPython DisplayHandle of the output area
        self._dirty = False                     # updated since the last close()?

    def update(self, step: int, metrics: Mapping[str, float],
               samples: Sequence[Sequence[Any]] | None = None) -> None:
        """Record one iteration's metrics (and samples); redraw every `every` updates."""
        n = len(self.history["step"])
        for name in metrics:
            if name not in self.history:
                self.history[name] = [math.nan] * n  # a metric that starts late
        self.history["step"].append(step)
        for name, values in self.history.items():
            if name != "step":
                value = metrics.get(name)
                values.append(math.nan if value is None else float(value))  # tensors too
        if samples is not None:
            self.samples = list(samples)
        self._dirty = True
        if self.live and n % self.every == 0 and self._redraw_affordable():
            self._redraw()

    def _redraw_affordable(self) -> bool:
        """True while the redraws so far took at most max_overhead of the time since the first update."""
        now = time.perf_counter()
        if self._started is None:
            self._started = now
        if self.max_overhead is None or not self.redraw_seconds:
            return True
        return sum(self.redraw_seconds) <= self.max_overhead * (now - self._started)

    def figure(self) -> CourseFigure:
        """A fresh static figure of the whole history."""
        return plot_history(self.history, self.panels, title=self.title, xlabel=self.xlabel)

    def save(self, path: str | os.PathLike) -> str:
        """Save the static figure atomically (format from the extension)."""
        return save_figure(self.figure(), path)

    def close(self) -> None:
        """Replace the live output with the final static figure (every point, autoscaled) and
        free the live figure. Call it after the training loop (or use `with LiveDashboard(...)`)."""
        if self.live and self._dirty:
            self._show(figure_png(self.figure(), tight=True))
        self._grid, self._dirty = None, False

    finalize = close

    def __enter__(self) -> "LiveDashboard":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _repr_png_(self) -> bytes:
        return figure_png(self.figure(), tight=True)

    def _redraw(self) -> None:
        start = time.perf_counter()
        if self._grid is None:
            self._grid = _Panels(self.panels, title=self.title, xlabel=self.xlabel, live=True)
        self._show(self._grid.live_png(self.history))
        self.redraw_seconds.append(time.perf_counter() - start)

    def _show(self, png: bytes) -> None:
        """Display the first time, then update that same output in place."""
        from IPython.display import display

        bundle = self._bundle(png)
        if self._handle is None:
            self._handle = display(bundle, raw=True, display_id=True)
        else:
            self._handle.update(bundle, raw=True)

    def _bundle(self, png: bytes) -> dict[str, str]:
        """One output: the figure, and under it the latest samples, as a MIME bundle."""
        step = self.history["step"][-1]
        latest = ", ".join(f"{n}={v:.3g}" for n in self.history if n != "step"
                           for v in [_latest(self.history[n])] if v is not None)
        bundle = {"text/plain": f"LiveDashboard step {step}: {latest}"}
        if self.show_samples and self.samples:
            table = render_samples_html(self.samples, max_rows=self.max_samples)
            bundle["text/html"] = (f"<div>{_img_tag(png)}<div><b>latest samples (step {step})"
                                   f"</b></div>{table}</div>")
        else:
            bundle["image/png"] = base64.b64encode(png).decode()
        return bundle


# ---------------------------------------------------------------------------------------------
# Widgets: thin wrappers over the renderers above
# ---------------------------------------------------------------------------------------------

def _widgets():
    """ipywidgets, or None where it is not installed (then the functions return static HTML)."""
    try:
        import ipywidgets
    except ImportError:
        return None
    return ipywidgets


class StaticView:
    """What a widget function returns without ipywidgets: its first state as HTML."""

    def __init__(self, html_text: str):
        self.html = html_text

    def _repr_html_(self) -> str:
        return self.html

    def _static_html(self) -> str:
        return self.html


_PANEL_CLASS = None


def _panel(children, static: Callable[[], str]):
    """A VBox whose notebook output also carries a static HTML snapshot of its current state."""
    global _PANEL_CLASS
    widgets = _widgets()
    if _PANEL_CLASS is None:
        class Panel(widgets.VBox):
            def _repr_mimebundle_(self, **kwargs):
                bundle = super()._repr_mimebundle_(**kwargs)
                bundle["text/html"] = self._static_html()  # shown where widgets cannot run
                return bundle

        _PANEL_CLASS = Panel
    box = _PANEL_CLASS(children=children)
    box._static_html = static
    return box


def sample_browser(samples_by_iteration: Sequence[Sequence[Sequence[Any]]], max_rows: int = 8):
    """Slider over PPO iterations; shows that iteration's (prompt, response, extra) samples.

    Returns a widget with `.slider`, `.html` and `.on_change(change)` (the slider's observer)."""
    samples_by_iteration = [list(s) for s in samples_by_iteration]

    def render(i: int) -> str:
        if not samples_by_iteration:
            return render_samples_html([])
        return (f"<b>iteration {i}</b>" +
                render_samples_html(samples_by_iteration[i], max_rows=max_rows))

    return _slider_view(render, max(len(samples_by_iteration) - 1, 0), "iteration")


def _slider_view(render: Callable[[int], str], last: int, description: str):
    """An IntSlider over 0..last and the HTML that render(value) gives; StaticView(render(0)) without ipywidgets.

    Returns a widget with `.slider`, `.html` and `.on_change(change)` (the slider's observer)."""
    widgets = _widgets()
    if widgets is None:
        return StaticView(render(0))
    slider = widgets.IntSlider(value=0, min=0, max=last, description=description, continuous_update=False)
    out = widgets.HTML(value=render(0))

    def on_change(change: Mapping[str, Any]) -> None:
        out.value = render(int(change["new"]))

    slider.observe(on_change, names="value")
    box = _panel([slider, out], static=lambda: out.value)
    box.slider, box.html, box.on_change = slider, out, on_change
    return box


def render_side_by_side_html(prompts: Sequence[str], responses: Mapping[str, Sequence[str]],
                             gold: Mapping[str, Sequence[float]] | None = None, start: int = 0,
                             page_size: int = 5, max_chars: int = 200) -> str:
    """HTML table of rows start .. start + page_size: the prompt, then each model's response (and gold score)."""
    names = list(responses)
    header = "".join(f"<th {_CELL}>{html.escape(h)}</th>" for h in ["#", "prompt", *names])
    rows = []
    for i in range(start, min(start + page_size, len(prompts))):
        prompt = prompts[i].rsplit("Human:", 1)[-1].split("\nAssistant:", 1)[0].strip()
        cells = [f"<td {_CELL}>{i}</td>", f"<td {_TEXT_CELL}>{html.escape(_shorten(prompt, max_chars))}</td>"]
        for name in names:
            text = html.escape(_shorten(str(responses[name][i]), max_chars))
            if gold is not None and name in gold:
                text += f"<br><span style='color:#8a6d00'>gold {float(gold[name][i]):.1f}</span>"
            cells.append(f"<td {_TEXT_CELL}>{text}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table {_TABLE_STYLE}><tr>{header}</tr>{''.join(rows)}</table>"


def side_by_side(prompts: Sequence[str], responses: Mapping[str, Sequence[str]],
                 gold: Mapping[str, Sequence[float]] | None = None, page_size: int = 5):
    """Page through prompts with every model's response beside it (InstructGPT's appendix of samples).

    Returns a widget with `.slider` (the page: rows page·page_size ..), `.html` and `.on_change(change)`."""
    prompts = list(prompts)
    for name, texts in responses.items():
        if len(texts) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but {len(texts)} responses from {name!r}")

    def render(page: int) -> str:
        return render_side_by_side_html(prompts, responses, gold, page * page_size, page_size)

    return _slider_view(render, max(math.ceil(len(prompts) / page_size) - 1, 0), "page")


def text_scorer(score_fn: Callable[[str, str], Mapping[str, Any]], prompt_options: Sequence[str],
                default_response: str = ""):
    """Pick a prompt, type your own response, see every score `score_fn(prompt, response)` gives.

    Returns a widget with `.prompt` (Dropdown), `.response` (Textarea), `.html` and `.refresh()`
    (re-score the current prompt and response; the controls' observers call it)."""
    prompt_options = list(prompt_options)

    def render(prompt: str, response: str) -> str:
        if not response.strip():
            return "<p><i>Type a response to score it.</i></p>"
        try:
            scores = score_fn(prompt, response)
        except Exception as err:  # show the error where the student is looking
            return f"<p style='color:#b00'>score_fn failed: {html.escape(repr(err))}</p>"
        return render_scores_html(scores)

    first = prompt_options[0] if prompt_options else ""
    widgets = _widgets()
    if widgets is None:
        return StaticView(render(first, default_response))
    prompt = widgets.Dropdown(options=prompt_options, value=first or None, description="prompt",
                              layout=widgets.Layout(width="95%"))
    response = widgets.Textarea(value=default_response, placeholder="your response ...",
                                description="response", continuous_update=False,
                                layout=widgets.Layout(width="95%", height="5em"))
    out = widgets.HTML(value=render(first, default_response))

    def refresh(change: Mapping[str, Any] | None = None) -> None:
        out.value = render(prompt.value or "", response.value)

    prompt.observe(refresh, names="value")
    response.observe(refresh, names="value")
    box = _panel([prompt, response, out], static=lambda: (
        f"<p><b>prompt:</b> {html.escape(prompt.value or '')}<br><b>response:</b> "
        f"{html.escape(response.value)}</p>{out.value}"))
    box.prompt, box.response, box.html, box.refresh = prompt, response, out, refresh
    return box


def beta_slider(sweep: Sequence[Mapping[str, Any]]):
    """Slider over the β values of a sweep: the reward-KL frontier with that run highlighted,
    and that run's samples (if the dicts have "samples").

    Returns a widget with `.slider` (options are sweep indices, labelled by β), `.image`
    (PNG of `frontier_figure`), `.html` (samples) and `.on_change(change)`."""
    sweep = list(sweep)
    if not sweep:
        raise ValueError("beta_slider needs at least one run in the sweep")
    by_beta = sorted(range(len(sweep)), key=lambda i: sweep[i]["kl_coef"])

    def render(i: int) -> tuple[bytes, str]:
        png = figure_png(frontier_figure(sweep, i), tight=True)
        samples = sweep[i].get("samples")
        return png, render_samples_html(samples, max_rows=6) if samples else ""

    png, samples_html = render(by_beta[0])
    widgets = _widgets()
    if widgets is None:
        return StaticView(_img_tag(png) + samples_html)
    slider = widgets.SelectionSlider(options=[(f"{sweep[i]['kl_coef']:g}", i) for i in by_beta],
                                     value=by_beta[0], description="β",
                                     continuous_update=False)
    image = widgets.Image(value=png, format="png")
    out = widgets.HTML(value=samples_html)

    def on_change(change: Mapping[str, Any]) -> None:
        image.value, out.value = render(int(change["new"]))

    slider.observe(on_change, names="value")
    box = _panel([slider, image, out], static=lambda: _img_tag(image.value) + out.value)
    box.slider, box.image, box.html, box.on_change = slider, image, out, on_change
    return box


def render_frontier(points: Sequence[Mapping[str, Any]], shown: Sequence[str], selected: int,
                    sft_gold: float | None = None, max_rows: int = 6) -> tuple[bytes, str]:
    """What `frontier_explorer` shows: (PNG of `methods_frontier_figure` with the point `selected` ringed, HTML of
    that point's first `max_rows` samples, its "samples" (prompt, response, extra) rows, under a one-line caption)."""
    point = points[selected]
    png = figure_png(methods_frontier_figure(points, shown, selected, sft_gold), tight=True)
    caption = (f"<b>{html.escape(point['method'])}, {html.escape(point['label'])}</b>: gold {point['gold']:.2f}, "
               f"KL {point['kl']:.2f} nats")
    samples = point.get("samples")
    return png, caption + (render_samples_html(samples, max_rows=max_rows) if samples else "")


def frontier_explorer(points: Sequence[Mapping[str, Any]], sft_gold: float | None = None, max_rows: int = 6):
    """Switch methods on and off on the gold-KL frontier and read any point's samples.

    points as `methods_frontier_figure` takes them (each may carry "samples"). Returns a widget with
    `.methods` (one Checkbox per method), `.point` (Dropdown of the points), `.image`, `.html` and `.refresh()`
    (redraw from the controls' current values; their observers call it); StaticView of the first point without
    ipywidgets."""
    points = list(points)
    if not points:
        raise ValueError("frontier_explorer needs at least one point")
    methods = list(dict.fromkeys(p["method"] for p in points))
    png, text = render_frontier(points, methods, 0, sft_gold, max_rows)
    widgets = _widgets()
    if widgets is None:
        return StaticView(_img_tag(png) + text)
    boxes = [widgets.Checkbox(value=True, description=m, indent=False, layout=widgets.Layout(width="auto"))
             for m in methods]
    point = widgets.Dropdown(options=[(f"{p['method']}, {p['label']}", i) for i, p in enumerate(points)], value=0,
                             description="point", layout=widgets.Layout(width="60%"))
    image = widgets.Image(value=png, format="png")
    out = widgets.HTML(value=text)

    def refresh(change: Mapping[str, Any] | None = None) -> None:
        shown = [box.description for box in boxes if box.value]
        image.value, out.value = render_frontier(points, shown, int(point.value), sft_gold, max_rows)

    for control in (*boxes, point):
        control.observe(refresh, names="value")
    box = _panel([widgets.HBox(boxes), point, image, out], static=lambda: _img_tag(image.value) + out.value)
    box.methods, box.point, box.image, box.html, box.refresh = boxes, point, image, out, refresh
    return box


__all__ = [
    "METRICS", "MODEL_COLORS", "metrics_table_markdown", "model_color", "in_notebook",
    "CourseFigure", "figure_png", "save_figure", "static_html", "show",
    "render_samples_html", "render_scores_html", "plot_history", "hist_better_worse",
    "bar_rates", "frontier_figure", "win_rate_figure", "alignment_tax_figure", "LiveDashboard", "StaticView",
    "sample_browser", "render_side_by_side_html", "side_by_side", "text_scorer", "beta_slider",
    "methods_frontier_figure", "render_frontier", "frontier_explorer",
]
