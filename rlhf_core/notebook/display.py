"""Figure plumbing: one look for every figure, PNG rendering, atomic saving, and `show` that works anywhere.

Figures are built with `matplotlib.figure.Figure` (Agg canvas), never through `pyplot`: nothing opens a window,
nothing blocks, nothing piles up in `plt.get_fignums()`, and Jupyter's inline backend does not print a second copy
at the end of a cell. A figure shows itself in a notebook when it is the last expression of a cell (`_repr_png_`).
In scripts, tests and CI there is no front end: `show` does nothing, and `static_html` gives the snapshot a saved
notebook or the course's website shows instead.

    CourseFigure   a Figure that shows itself as a PNG at the end of a cell
    new_figure     a CourseFigure in the course's style (FIGURE_STYLE) on an Agg canvas
    figure_png     a figure as PNG bytes; img_tag(png) as an inline <img>
    save_figure    write a figure atomically (.png, .svg, .pdf)
    static_html    what a reader without a kernel sees of a widget, figure or HTML-able object
    show           display a widget, figure or HTML in a notebook; nothing elsewhere
    in_notebook    True inside a Jupyter kernel
"""
from __future__ import annotations

import base64
import html
import io
import os
from typing import Any

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..common.files import atomic_file

# Small type, no top/right spines, a light grid: every figure of the course looks alike.
FIGURE_STYLE = {
    "font.size": 9, "axes.titlesize": 9, "axes.labelsize": 9, "legend.fontsize": 8,
    "xtick.labelsize": 8, "ytick.labelsize": 8, "axes.spines.top": False,
    "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3, "figure.dpi": 100,
    "savefig.dpi": 100,
}


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


def new_figure(**kwargs) -> CourseFigure:
    """A CourseFigure in FIGURE_STYLE on its own Agg canvas; kwargs go to Figure (figsize, layout ...)."""
    with matplotlib.rc_context(FIGURE_STYLE):
        fig = CourseFigure(**kwargs)
    FigureCanvasAgg(fig)  # Agg canvas: render without any GUI backend
    return fig


def figure_png(fig: Figure, tight: bool = False, dpi: float | None = None) -> bytes:
    """Render a figure to PNG bytes with Agg (fast compression: this runs every iteration)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi or fig.dpi, bbox_inches="tight" if tight else None,
                pil_kwargs={"compress_level": 1})
    return buf.getvalue()


def img_tag(png: bytes) -> str:
    """PNG bytes as an inline <img> (base64 data URL) that fits the width of the output."""
    return (f'<img style="max-width:100%" '
            f'src="data:image/png;base64,{base64.b64encode(png).decode()}"/>')


def save_figure(fig: Figure, path: str | os.PathLike) -> str:
    """Write `fig` to `path` atomically (temp file in the same folder, then rename).

    The format follows the extension (.png, .svg, .pdf). A reader never sees a half-written file,
    and a crash leaves no temp file behind."""
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
        return img_tag(figure_png(obj, tight=True))
    if hasattr(obj, "_repr_html_"):
        return obj._repr_html_() or ""
    return f"<pre>{html.escape(str(obj))}</pre>"


def show(obj: Any) -> None:
    """Display a widget, figure or HTML in a notebook; do nothing in scripts and tests.

    The course's widgets (notebook.widgets) carry a static HTML snapshot in the same output, so a saved
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


__all__ = ["FIGURE_STYLE", "in_notebook", "CourseFigure", "new_figure", "figure_png", "img_tag", "save_figure",
           "static_html", "show"]
