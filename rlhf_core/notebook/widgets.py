"""The interactive widgets: sliders and boxes over results, to poke at what training made.

Each widget is a thin layer (`ipywidgets`) over a plain function of data that returns HTML or a figure
(notebook.tables' `render_*_html`, notebook.figures, `render_frontier` here), so every callback is tested without a
front end. Without ipywidgets a widget function returns a `StaticView` of its first state; with it, the widget's
output also carries a static HTML snapshot of its current state (`_panel`), so a saved notebook opened without a
kernel, or the course's website, still shows something.

    sample_browser      slider over PPO iterations -> that iteration's samples
    side_by_side        pages of prompts with every model's response beside them (notebook 05)
    text_scorer         type a response, see the reward model's and the labeler's scores
    beta_slider         slider over a β sweep -> the reward-KL frontier and that run's samples (notebook 06)
    frontier_explorer   methods on/off on the gold-KL frontier -> a point's samples (notebook 07)
"""
from __future__ import annotations

import html
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .display import figure_png, img_tag
from .figures import frontier_figure, methods_frontier_figure
from .tables import render_samples_html, render_scores_html, render_side_by_side_html


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
        return StaticView(img_tag(png) + samples_html)
    slider = widgets.SelectionSlider(options=[(f"{sweep[i]['kl_coef']:g}", i) for i in by_beta],
                                     value=by_beta[0], description="β",
                                     continuous_update=False)
    image = widgets.Image(value=png, format="png")
    out = widgets.HTML(value=samples_html)

    def on_change(change: Mapping[str, Any]) -> None:
        image.value, out.value = render(int(change["new"]))

    slider.observe(on_change, names="value")
    box = _panel([slider, image, out], static=lambda: img_tag(image.value) + out.value)
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
        return StaticView(img_tag(png) + text)
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
    box = _panel([widgets.HBox(boxes), point, image, out], static=lambda: img_tag(image.value) + out.value)
    box.methods, box.point, box.image, box.html, box.refresh = boxes, point, image, out, refresh
    return box


__all__ = ["StaticView", "sample_browser", "side_by_side", "text_scorer", "beta_slider", "render_frontier",
           "frontier_explorer"]
