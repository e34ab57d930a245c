"""Training curves: `LiveDashboard` redraws them in place while a stage trains; `plot_history` draws them afterwards.

In a Jupyter kernel the dashboard redraws one output area in place (the figure, and under it the latest samples);
in scripts, tests and CI it only records its history, and `figure()` / `save(path)` / `plot_history` draw the static
figure. Both draw one small-multiple axes per panel, a panel being one metric name or a tuple of names sharing axes,
each name one of notebook.metrics.METRICS (a name that is not one warns: usually a typo). A finished run's history can
be drawn under the live one (`reference=(label, history)`), dashed, on the same axes: two runs compared as they train.

A live redraw has to be cheap on a slow CPU: `_Panels` keeps one figure and one line per metric, grows the axis
limits only when the data outgrows them (y to the data plus its trend), and between those full draws restores a
cached background and draws just the lines ("blitting"); redrawing takes at most `max_overhead` of the wall time.

    LiveDashboard   live small-multiples during training; a history recorder and static figure elsewhere
    plot_history    static small-multiples of a history (a dict of lists, or a list of log records)
"""
from __future__ import annotations

import base64
import io
import math
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.layout_engine import ConstrainedLayoutEngine

from .display import CourseFigure, FIGURE_STYLE, figure_png, img_tag, in_notebook, new_figure, save_figure
from .metrics import METRIC_COLORS, UNITS, check_metric_names
from .tables import render_samples_html


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
                 panel_size=(3.3, 2.3), reference: tuple[str, Mapping] | None = None):
        self.panels = [_panel_names(p) for p in panels]
        self.live = live
        ref_label, ref_cols = (reference[0], _as_columns(reference[1])) if reference else ("", {})
        self.reference_cols = ref_cols  # a finished run, drawn dashed under the live lines (part of the background)
        nrows, ncols = _grid(len(self.panels), ncols)
        self.fig = new_figure(figsize=(panel_size[0] * ncols, panel_size[1] * nrows + 0.4),
                               layout="none" if live else "constrained")
        # Live mode runs the layout by hand, only when the tick labels got wider.
        self._layout = ConstrainedLayoutEngine() if live else None
        self._tick_label_widths: tuple[int, ...] = ()
        with matplotlib.rc_context(FIGURE_STYLE):
            axes = self.fig.subplots(nrows, ncols, squeeze=False).ravel()
            self.lines = [[] for _ in self.panels]  # per panel: one Line2D per metric
            self.titles = []                         # per panel: the title Text (latest values)
            for i, (ax, names) in enumerate(zip(axes, self.panels)):
                for j, name in enumerate(names):
                    (line,) = ax.plot([], [], color=METRIC_COLORS.get(name, f"C{j}"), lw=1.5,
                                      ms=3, label=name, animated=live)
                    self.lines[i].append(line)
                    if name in ref_cols:
                        xs, ys = _finite_points(ref_cols["step"], ref_cols[name])
                        ax.plot(xs, ys, color=METRIC_COLORS.get(name, f"C{j}"), lw=1.2, ls="--", alpha=0.6,
                                label=ref_label if len(names) == 1 else f"{name.rsplit('/', 1)[-1]}, {ref_label}")
                if _has_zero_line(names):
                    ax.axhline(0.0, color="#999", lw=0.8, ls="--")  # SFT demonstrations = 0
                if len(names) > 1 or any(name in ref_cols for name in names):
                    if len(names) == 1:  # the live line's label: the run's own name would be the metric again
                        self.lines[i][0].set_label("this run")
                    ax.legend(loc="best", framealpha=0.7, edgecolor="none")
                self.titles.append(ax.set_title(" · ".join(names), loc="left", animated=live))
                ax.set_ylabel(UNITS.get(names[0], ""))
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
                xs, ys = _finite_points(x, y)
                line.set_data(xs, ys)
                line.set_marker("o" if len(xs) <= 30 else "")
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
        ref_x = np.asarray(self.reference_cols.get("step", []), dtype=float)
        first, last = np.nanmin(np.concatenate([x, ref_x])), np.nanmax(np.concatenate([x, ref_x]))
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
            refs = [np.asarray(self.reference_cols[n], dtype=float) for n in names if n in self.reference_cols]
            finite = np.concatenate([y[np.isfinite(y)] for y in ys + refs] + [np.zeros(0)])
            if finite.size == 0:
                continue
            lo, hi = finite.min(), finite.max()
            y0, y1 = ax.get_ylim()
            if x_changed or lo < y0 or hi > y1:
                y0, y1 = _projected_ylim(x, ys, x_end, zero=_has_zero_line(names))
                margin = 0.1 * (hi - lo)  # the reference run is drawn whole from the start
                ax.set_ylim(min(y0, lo - margin), max(y1, hi + margin))
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


def _finite_points(x: Sequence, y: Sequence) -> tuple[list, list]:
    """The points whose y is finite: a metric logged at some steps (a validation loss per epoch) has NaN in between,
    which would break every segment of its line."""
    points = [(xi, yi) for xi, yi in zip(x, y) if yi is not None and math.isfinite(yi)]
    return [p[0] for p in points], [p[1] for p in points]


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
                 ncols: int | None = None, reference: tuple[str, Mapping] | None = None) -> CourseFigure:
    """Static small-multiples figure of a training history.

    history: dict of lists with a "step" key (LiveDashboard.history), or a list of log records
             (one dict per iteration, as in a JSONL log).
    panels:  metric names; a tuple puts several on one panel, e.g. ("sft/loss", "sft/val_loss").
    reference: (label, history) of another run, drawn dashed on the panels whose metrics it has."""
    grid = _Panels(panels, title=title, xlabel=xlabel, ncols=ncols, reference=reference)
    grid.set_data(_as_columns(history))
    return grid.fig


class LiveDashboard:
    """Training curves that redraw in place in a notebook; a plain history recorder elsewhere.

        dash = LiveDashboard(["objective/score", "objective/gold", "objective/kl",
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
    `reference=(label, history)` draws a finished run dashed on the same axes, e.g. the reward-model
    run under the perfect-reward one.
    """

    def __init__(self, panels: Sequence[str | tuple[str, ...]], title: str | None = None,
                 every: int = 1, show_samples: bool = True, xlabel: str = "iteration",
                 max_samples: int = 4, live: bool | None = None, max_overhead: float | None = 0.1,
                 reference: tuple[str, Mapping] | None = None):
        self.panels = [p if isinstance(p, str) else tuple(p) for p in panels]
        self.reference = reference
        check_metric_names([n for p in self.panels for n in _panel_names(p)])
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
        return plot_history(self.history, self.panels, title=self.title, xlabel=self.xlabel, reference=self.reference)

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
            self._grid = _Panels(self.panels, title=self.title, xlabel=self.xlabel, live=True,
                                 reference=self.reference)
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
            bundle["text/html"] = (f"<div>{img_tag(png)}<div><b>latest samples (step {step})"
                                   f"</b></div>{table}</div>")
        else:
            bundle["image/png"] = base64.b64encode(png).decode()
        return bundle


__all__ = ["LiveDashboard", "plot_history"]
