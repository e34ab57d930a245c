"""The static site: every notebook executed and rendered with its figures, widgets as their static snapshots."""
import nbformat
import pytest

from rlhf_core.notebook.site import WIDGET_VIEW, build_site, notebook_summary, static_outputs


def tiny_course(folder):
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# 00 · A tiny notebook\n\n**In this notebook you will**\n\n- draw a *figure*;\n"
                                      "- move a slider.\n"),
        nbformat.v4.new_code_cell("from matplotlib.figure import Figure\nfrom rlhf_core.notebook.display import show\n"
                                  "from rlhf_core.notebook.widgets import sample_browser\n"
                                  "fig = Figure()\nfig.add_subplot().plot([1, 2, 3])\nshow(fig)"),
        nbformat.v4.new_code_cell("sample_browser([[('a prompt', 'iteration zero', {})], [('a prompt', 'one', {})]])"),
    ]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, folder / "00_tiny.ipynb")


def test_the_site_has_a_page_per_notebook_with_its_figures_and_an_index(tmp_path):
    (tmp_path / "notebooks").mkdir()
    tiny_course(tmp_path / "notebooks")
    entries = build_site(tmp_path / "site", tmp_path / "notebooks", timeout=120, log=lambda *_: None)
    page = (tmp_path / "site" / "00_tiny.html").read_text()
    assert "data:image/png;base64" in page, "the figure is embedded in the page"
    assert "iteration zero" in page, "the widget shows its static snapshot"
    assert WIDGET_VIEW not in page
    index = (tmp_path / "site" / "index.html").read_text()
    assert "href='00_tiny.html'" in index and "00 · A tiny notebook" in index and "<em>figure</em>" in index
    assert entries[0]["summary"] == ["draw a *figure*", "move a slider"]
    assert not [p for p in (tmp_path / "site").iterdir() if p.name.startswith(".")], "no temporary file left"


def test_static_outputs_keep_the_snapshot_and_drop_the_live_view():
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("w")
    cell.outputs = [nbformat.v4.new_output("display_data", data={WIDGET_VIEW: {"model_id": "x"}, "text/html": "<b>s</b>",
                                                                 "text/plain": "VBox()"}),
                    nbformat.v4.new_output("display_data", data={WIDGET_VIEW: {"model_id": "y"}, "text/plain": "x"})]
    nb.cells = [cell]
    nb.metadata["widgets"] = {"state": {}}
    assert static_outputs(nb) == 1
    assert WIDGET_VIEW not in cell.outputs[0]["data"] and WIDGET_VIEW in cell.outputs[1]["data"]
    assert "widgets" not in nb.metadata


def test_every_course_notebook_has_a_title_and_says_what_you_will_do():
    from rlhf_core.notebook.site import NOTEBOOKS

    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        title, bullets = notebook_summary(nbformat.read(path, as_version=4))
        assert title.startswith(path.name[:2] + " · ") and len(bullets) >= 3, (path.name, title, bullets)


def test_an_empty_notebooks_folder_is_an_error_that_says_what_to_pass(tmp_path):
    with pytest.raises(FileNotFoundError, match="--notebooks"):
        build_site(tmp_path / "site", tmp_path, log=lambda *_: None)


def test_the_ci_workflow_runs_the_courses_ci_and_publishes_the_site():
    from pathlib import Path

    workflow = (Path(__file__).resolve().parents[1] / ".github" / "workflows" / "ci.yml").read_text()
    assert "run: .ci/run" in workflow, "the same CI as the course's own: a fresh venv, then pytest --nbval"
    assert "python -m rlhf_core.notebook.site --out site" in workflow and "path: site" in workflow
    assert "actions/deploy-pages" in workflow and "refs/heads/main" in workflow
