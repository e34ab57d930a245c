"""The course as a static website: every notebook executed, one HTML page each with all its outputs and figures.

    python -m rlhf_core.notebook.site --out site [--notebooks notebooks] [--timeout 900] [--no-execute]

Each notebook runs top to bottom in a fresh kernel in its own folder, as `pytest --nbval` runs it (about as long as
the notebooks take in `pytest --nbval -n 0`: they build the checkpoints they need), and nbconvert's "lab" template
writes it as one self-contained page (figures are embedded PNGs). Widgets have no kernel behind them on a static
page, so each keeps the static HTML snapshot the course's widgets carry (`widgets.StaticView`, `widgets._panel`) and
drops the live view. index.html is the notebook map: each notebook's title, what you do in it ("In this notebook you
will ...") and a link. Every page is written whole or not at all (`common.files.atomic_file`); --no-execute renders
the notebooks as committed (without outputs), for a quick look at the layout.
"""
from __future__ import annotations

import argparse
import html
import re
import time
from pathlib import Path

from ..common.files import atomic_file

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def static_outputs(nb) -> int:
    """Drop the live widget view of every output that also carries static HTML (the course's widgets all do), so a
    page without a kernel shows the snapshot. Returns how many outputs changed. Modifies `nb` in place."""
    changed = 0
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if WIDGET_VIEW in data and "text/html" in data:
                del data[WIDGET_VIEW]
                changed += 1
    nb.metadata.pop("widgets", None)
    return changed


def notebook_summary(nb) -> tuple[str, list[str]]:
    """(title, what you do) of a course notebook: its first heading, and its "In this notebook you will" bullets
    (markdown, one string each; none when it has no such list)."""
    title, bullets = "", []
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        lines = cell.source.splitlines()
        if not title:
            title = next((line.lstrip("#").strip() for line in lines if line.startswith("#")), "")
        if "In this notebook you will" in cell.source:
            after = cell.source.split("In this notebook you will", 1)[1]
            items = re.split(r"\n- ", "\n" + after.split("\n\n**", 1)[0].strip("*\n "))
            bullets = [" ".join(item.split()) for item in items if item.strip()]
            break
    return title, [b.rstrip(";.") for b in bullets]


def execute(nb, folder: Path, timeout: int):
    """Run every cell of `nb` in a fresh python3 kernel whose working folder is `folder` (as nbval does)."""
    from nbclient import NotebookClient

    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(folder)}}).execute()
    return nb


def render_page(nb) -> str:
    """The notebook as one self-contained HTML page (nbconvert's lab template; figures embedded)."""
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter(template_name="lab").from_notebook_node(nb)
    return body


def render_index(entries: list[dict]) -> str:
    """index.html: the notebook map, one row per notebook (link, title, what you do, seconds to run). The bullets are
    the notebooks' own markdown, rendered as nbconvert renders markdown cells."""
    from nbconvert.filters.markdown import markdown2html

    def bullets(items: list[str]) -> str:
        return "<ul>" + "".join(f"<li>{markdown2html(item).strip().removeprefix('<p>').removesuffix('</p>')}</li>"
                                for item in items) + "</ul>" if items else ""

    rows = "".join(
        f"<tr><td><a href='{html.escape(e['page'])}'>{html.escape(e['name'])}</a></td>"
        f"<td><a href='{html.escape(e['page'])}'><b>{html.escape(e['title'])}</b></a>{bullets(e['summary'])}</td>"
        f"<td style='text-align:right'>{e['seconds']:.0f}</td></tr>" for e in entries)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>RLHF in miniature</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; color: #222; }}
table {{ border-collapse: collapse; width: 100%; }}
td, th {{ border-bottom: 1px solid #ddd; padding: 0.6rem; vertical-align: top; text-align: left; }}
ul {{ margin: 0.3rem 0 0 0; padding-left: 1.2rem; color: #444; font-size: 0.92rem; }}
a {{ color: #1f5fa8; }}
</style></head><body>
<h1>RLHF in miniature</h1>
<p>The InstructGPT recipe (Ouyang et al. 2022) — supervised fine-tuning, a reward model trained on ranked outputs,
PPO with a KL penalty — run end to end on small GPT-2 models. Each page is a notebook of the course, executed top
to bottom with every output and figure; to run them yourself, see the course's README.</p>
<table><tr><th>notebook</th><th>what you do</th><th>seconds to run</th></tr>{rows}</table>
<p style="color:#777">Built {time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())} by <code>python -m rlhf_core.notebook.site</code>.</p>
</body></html>
"""


def build_site(out_dir: str | Path, notebooks_dir: str | Path = NOTEBOOKS, run: bool = True, timeout: int = 900,
               log=print) -> list[dict]:
    """Execute (unless run=False) and render every notebook of `notebooks_dir` into `out_dir`, then index.html.
    Returns the index entries: {"name", "page", "title", "summary", "seconds"}."""
    import nbformat


    out_dir, notebooks_dir = Path(out_dir), Path(notebooks_dir)
    paths = sorted(notebooks_dir.glob("*.ipynb"))
    if not paths:
        raise FileNotFoundError(f"no notebooks (*.ipynb) in {notebooks_dir}; pass --notebooks with the course's "
                                "notebooks folder")
    entries = []
    for path in paths:
        start = time.time()
        nb = nbformat.read(path, as_version=4)
        if run:
            execute(nb, notebooks_dir, timeout)
        static_outputs(nb)
        page = path.with_suffix(".html").name
        with atomic_file(out_dir / page) as f:
            f.write(render_page(nb))
        title, summary = notebook_summary(nb)
        entries.append({"name": path.name, "page": page, "title": title, "summary": summary,
                        "seconds": time.time() - start})
        log(f"{path.name}: {entries[-1]['seconds']:.0f} s -> {out_dir / page}")
    with atomic_file(out_dir / "index.html") as f:
        f.write(render_index(entries))
    log(f"{out_dir / 'index.html'}: {len(entries)} notebooks")
    return entries


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Execute every notebook and write the course as a static site.")
    parser.add_argument("--out", required=True, help="folder for index.html and one page per notebook")
    parser.add_argument("--notebooks", default=str(NOTEBOOKS), help="the notebooks folder (default: the course's)")
    parser.add_argument("--timeout", type=int, default=900, help="seconds a cell may run before the build fails")
    parser.add_argument("--no-execute", action="store_true", help="render the notebooks as committed, without outputs")
    args = parser.parse_args(argv)
    build_site(args.out, args.notebooks, run=not args.no_execute, timeout=args.timeout)


if __name__ == "__main__":
    main()
