"""Live plots and widgets: every callback is a plain function, tested without a front end; one
test runs a tiny notebook in a real kernel to check that the dashboard redraws in place."""

import math
import os
import re
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure

from rlhf_core.notebook import dashboard, metrics
from rlhf_core.notebook.dashboard import LiveDashboard, plot_history
from rlhf_core.notebook.display import save_figure, show, static_html
from rlhf_core.notebook.figures import (alignment_tax_figure, bar_rates, best_of_n_figure, frontier_figure,
                                        gold_kl_figure, hist_better_worse, methods_frontier_figure, win_rate_figure)
from rlhf_core.notebook.metrics import METRICS, MODEL_COLORS, metrics_table_markdown, model_color
from rlhf_core.notebook.tables import render_samples_html, render_scores_html, render_side_by_side_html
from rlhf_core.notebook.widgets import (beta_slider, frontier_explorer, render_frontier, sample_browser, side_by_side,
                                        text_scorer)

REPO = Path(__file__).resolve().parents[1]
PPO_PANELS = [("objective/score", "objective/gold"), "objective/kl", "objective/kl_coef",
              "objective/total"]


def ppo_metrics(i: int) -> dict:
    return {"objective/score": 0.1 * i, "objective/gold": 0.05 * i, "objective/kl": 0.3 * i,
            "objective/kl_coef": 0.1 / (1 + i), "objective/total": 0.1 * i - 0.01 * i}


def visible_axes(fig: Figure):
    return [ax for ax in fig.axes if ax.get_visible()]


# --- METRICS --------------------------------------------------------------------------------

def test_metrics_are_unique_named_and_all_have_a_meaning():
    names = list(METRICS)
    assert len(names) == len(set(names))
    for name in ["objective/score", "objective/gold", "objective/kl", "objective/kl_coef",
                 "objective/total", "policy/clipfrac", "policy/approx_kl", "policy/entropy",
                 "value/loss", "value/clipfrac", "ppo/ptx_loss", "sft/loss", "sft/val_loss",
                 "rm/loss", "rm/accuracy", "time/iteration"]:
        assert name in METRICS
    for name, meaning in METRICS.items():
        assert re.fullmatch(r"[a-z]+/[a-z_]+", name), name
        assert len(meaning.split()) >= 3, name
    table = metrics_table_markdown().splitlines()
    assert table[0].startswith("| metric") and len(table) == 2 + len(METRICS)
    assert [row.split("`")[1] for row in table[2:]] == names
    assert set(metrics.UNITS) <= set(METRICS)  # no unit for a metric that does not exist


def test_unknown_panel_name_warns_with_a_suggestion():
    with pytest.warns(UserWarning, match="objective/kl"):
        LiveDashboard(["objective/KL"], live=False)


# --- LiveDashboard outside a kernel -----------------------------------------------------------

def test_dashboard_records_history_in_order_and_draws_one_axes_per_panel():
    dash = LiveDashboard(PPO_PANELS, title="PPO", live=False)
    for i in range(5):
        dash.update(i, ppo_metrics(i), samples=[("prompt", f"response {i}")])
    dash.update(5, {**ppo_metrics(5), "policy/clipfrac": 0.2, "objective/gold": None})
    assert dash.history["step"] == [0, 1, 2, 3, 4, 5]
    assert dash.history["objective/kl"] == pytest.approx([0.3 * i for i in range(6)])
    assert all(len(v) == 6 for v in dash.history.values())
    assert all(math.isnan(v) for v in dash.history["policy/clipfrac"][:5])  # started late
    assert math.isnan(dash.history["objective/gold"][5])
    assert dash.samples == [("prompt", "response 4")]  # latest samples kept
    fig = dash.figure()
    axes = visible_axes(fig)
    assert len(axes) == len(PPO_PANELS)
    curves = [[l for l in ax.get_lines() if not l.get_label().startswith("_")] for ax in axes]
    assert [[l.get_label() for l in c] for c in curves] == [list(dashboard._panel_names(p))
                                                            for p in PPO_PANELS]
    # each line holds the finite points of its metric only (NaN would break every segment)
    for c in curves:
        for line in c:
            finite = [v for v in dash.history[line.get_label()] if not math.isnan(v)]
            assert list(line.get_ydata()) == pytest.approx(finite)
    assert "objective/kl" in axes[1].get_title(loc="left")


def test_a_finished_run_is_drawn_dashed_on_the_panels_that_have_its_metrics(monkeypatch):
    reference = {"step": list(range(45)), "objective/gold": [6 + i / 10 for i in range(45)],
                 "objective/kl": [i / 20 for i in range(45)], "objective/score": [math.nan] * 45}
    panels = ["objective/gold", "objective/kl", "policy/entropy", "objective/score"]
    dash = LiveDashboard(panels, live=False, reference=("reward model", reference))
    for i in range(5):
        dash.update(i, {"objective/gold": 6.0, "objective/kl": 0.1, "policy/entropy": 1.0, "objective/score": 0.0})
    gold_ax, kl_ax, entropy_ax, score_ax = visible_axes(dash.figure())
    live, dashed = gold_ax.get_lines()
    assert live.get_label() == "this run" and list(live.get_ydata()) == [6.0] * 5
    assert dashed.get_label() == "reward model" and dashed.get_linestyle() == "--"
    assert list(dashed.get_ydata()) == pytest.approx(reference["objective/gold"])
    assert gold_ax.get_ylim()[1] >= max(reference["objective/gold"]) and kl_ax.get_legend() is not None
    assert len(entropy_ax.get_lines()) == 1 and entropy_ax.get_legend() is None  # the reference has no entropy
    assert [len(line.get_xdata()) for line in score_ax.get_lines()[:2]] == [5, 0]  # all NaN: nothing drawn

    # Live, the reference is whole from the first redraw: the limits cover it before the run gets there.
    monkeypatch.setattr(LiveDashboard, "_show", lambda self, png: None)
    live_dash = LiveDashboard(panels, live=True, max_overhead=None, reference=("reward model", reference))
    live_dash.update(0, {"objective/gold": 6.0, "objective/kl": 0.0})
    gold_live = live_dash._grid.axes[0]
    assert gold_live.get_xlim()[1] >= 44 and gold_live.get_ylim()[1] >= max(reference["objective/gold"])


def test_plot_history_accepts_log_records_and_sft_curves():
    records = [{"step": i, "sft/loss": 3.0 / (1 + i), "sft/val_loss": 3.2 / (1 + i)}
               for i in range(10)]
    fig = plot_history(records, [("sft/loss", "sft/val_loss")], title="SFT", xlabel="step")
    (ax,) = visible_axes(fig)
    assert [len(l.get_xdata()) for l in ax.get_lines()] == [10, 10]
    assert ax.get_xlabel() == "step"


def test_live_redraws_reuse_one_figure_blit_and_open_no_pyplot_figures(monkeypatch):
    shown = []

    class Handle:
        def update(self, bundle, raw=True):
            shown.append(("update", bundle))

    def fake_display(bundle, raw=False, display_id=False):
        shown.append(("display", bundle))
        return Handle()

    monkeypatch.setattr("IPython.display.display", fake_display)
    before = plt.get_fignums()
    dash = LiveDashboard(PPO_PANELS, title="PPO", live=True, max_overhead=None)  # every update redraws
    for i in range(40):
        dash.update(i, ppo_metrics(i), samples=[("<p>", "<script>x</script>")])
    grid = dash._grid
    assert plt.get_fignums() == before
    assert [kind for kind, _ in shown] == ["display"] + ["update"] * 39  # one output, in place
    assert "&lt;script&gt;" in shown[-1][1]["text/html"]
    # Most redraws only blit the lines: the full draw runs when a limit grows, O(log n) times.
    assert grid.full_draws <= 12, grid.full_draws
    print(f"median redraw {sorted(dash.redraw_seconds)[20] * 1000:.0f} ms")
    dash.close()
    assert shown[-1][0] == "update" and dash._grid is None
    assert plt.get_fignums() == before


def test_every_skips_redraws_but_keeps_history(monkeypatch):
    calls = []
    monkeypatch.setattr(LiveDashboard, "_show", lambda self, png: calls.append(len(png)))
    dash = LiveDashboard(["sft/loss"], every=5, live=True, show_samples=False, max_overhead=None)
    for i in range(12):
        dash.update(i, {"sft/loss": 1.0 / (1 + i)})
    assert len(calls) == 3 and len(dash.history["sft/loss"]) == 12  # steps 0, 5, 10
    dash.close()
    assert len(calls) == 4  # the final figure
    dash.close()
    assert len(calls) == 4  # nothing new to show


def test_redraws_take_at_most_their_share_of_the_wall_time(monkeypatch):
    """A loop whose steps are as fast as a redraw is slowed by at most max_overhead, yet still redraws."""
    clock = [0.0]
    monkeypatch.setattr(dashboard.time, "perf_counter", lambda: clock[0])

    def redraw(self):  # a redraw that takes 0.1 s of the fake clock
        clock[0] += 0.1
        self.redraw_seconds.append(0.1)

    monkeypatch.setattr(LiveDashboard, "_redraw", redraw)
    dash = LiveDashboard(["sft/loss"], live=True, show_samples=False, max_overhead=0.1)
    for i in range(200):
        dash.update(i, {"sft/loss": 1.0 / (1 + i)})
        clock[0] += 0.1  # each step of the loop itself
    spent, elapsed = sum(dash.redraw_seconds), clock[0]
    assert spent <= 0.1 * elapsed + 0.1 + 1e-9 and len(dash.redraw_seconds) >= 15, (spent, elapsed)
    assert len(dash.history["sft/loss"]) == 200  # every step recorded, redrawn or not
    unthrottled = LiveDashboard(["sft/loss"], live=True, show_samples=False, max_overhead=None)
    for i in range(20):
        unthrottled.update(i, {"sft/loss": 1.0})
    assert len(unthrottled.redraw_seconds) == 20


def test_save_figure_is_atomic_and_leaves_no_temp_file(tmp_path):
    dash = LiveDashboard(["sft/loss"], live=False)
    dash.update(0, {"sft/loss": 2.0})
    path = dash.save(tmp_path / "figs" / "sft.png")
    assert os.listdir(tmp_path / "figs") == ["sft.png"]
    assert Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError):
        save_figure(dash.figure(), tmp_path / "figs" / "bad.notaformat")
    assert os.listdir(tmp_path / "figs") == ["sft.png"]


# --- plain renderers ----------------------------------------------------------------------

def test_render_samples_html_escapes_text_and_shows_extra_columns():
    out = render_samples_html([("<script>alert(1)</script>", "a & b", {"score": 0.5}),
                               ("p2", "r2", {"gold": -1.0})])
    assert "<script>" not in out and "&lt;script&gt;" in out and "a &amp; b" in out
    assert "<th" in out and "score" in out and "gold" in out and "+0.500" in out
    assert render_samples_html([]).startswith("<p>")


def test_render_scores_html_contains_every_key_escaped():
    scores = {"reward model": 0.3, "gold": np.float32(1.25), "helpful": "yes", "<b>": 1}
    out = render_scores_html(scores)
    for key in ["reward model", "gold", "helpful", "&lt;b&gt;"]:
        assert key in out
    assert "+0.300" in out and "+1.250" in out and "yes" in out and "<b>" not in out


SWEEP = [{"kl_coef": b, "kl": kl, "score": s, "gold": g,
          "samples": [("prompt", f"response at beta {b}")]}
         for b, kl, s, g in [(0.3, 1.0, 0.2, 0.3), (0.03, 8.0, 1.5, -0.4), (0.1, 3.0, 0.8, 0.6)]]


def selected_points(fig):
    return sorted((tuple(line.get_xdata()), tuple(line.get_ydata()))
                  for line in fig.axes[0].get_lines() if line.get_gid() == "selected")


def test_frontier_figure_highlights_the_selected_point():
    for i, run in enumerate(SWEEP):
        fig = frontier_figure(SWEEP, i)
        assert selected_points(fig) == sorted([((run["kl"],), (run["score"],)),
                                               ((run["kl"],), (run["gold"],))])
        assert f"{run['kl_coef']:g}" in fig.axes[0].get_title(loc="left")
    assert selected_points(frontier_figure(SWEEP)) == []


def test_hist_and_bar_rates_use_labels_and_consistent_model_colors():
    fig = hist_better_worse([1.0, 2.0, 1.5], [0.0, -0.5, 0.2])
    ax = fig.axes[0]
    assert ax.get_xlabel() and ax.get_ylabel() and len(ax.get_legend().get_texts()) == 2
    rates = {"base": {"hallucination": 0.4, "rude": 0.2}, "sft": {"hallucination": 0.2},
             "ppo": {"hallucination": 0.1, "rude": 0.0}, "PPO-ptx": {"rude": 0.05}}
    ax = bar_rates(rates, "Failure rates").axes[0]
    by_model = {c.get_label(): c for c in ax.containers}
    for model in rates:
        assert by_model[model].patches[0].get_facecolor() == to_rgba(model_color(model))
    assert model_color("PPO-ptx") == MODEL_COLORS["ppo_ptx"]
    assert model_color("sft") == MODEL_COLORS["sft"]
    assert "%" in ax.get_ylabel()


def test_win_rate_figure_draws_each_comparison_with_its_interval():
    from rlhf_core.evaluate import win_rate

    rates = {"ppo_vs_base": win_rate([2, 3, 4, 1], [1, 1, 1, 2]).as_dict(), "ppo_vs_sft": win_rate([1, 2], [2, 1])}
    ax = win_rate_figure(rates).axes[0]
    bars = ax.patches
    assert [round(b.get_width()) for b in bars] == [75, 50]
    assert bars[0].get_facecolor() == to_rgba(model_color("ppo"))
    assert [t.get_text() for t in ax.get_yticklabels()] == ["ppo vs base", "ppo vs sft"]
    assert len(ax.collections) == 2, "one error bar (95 % interval) per comparison"
    bar = win_rate_figure({"tiny_ppo_vs_small_sft": rates["ppo_vs_sft"]}).axes[0].patches[0]
    assert bar.get_facecolor() == to_rgba(model_color("ppo")), "the colour of model A of WIN_RATE_PAIRS"


def test_alignment_tax_figure_scatters_preference_against_perplexity():
    ppl = {"base": 1.90, "sft": 1.95, "ppo": 1.99, "ppo_ptx": 1.96}
    fig = alignment_tax_figure(ppl, {"ppo": {"rate": 0.6, "ci95": [0.5, 0.7]},
                                     "ppo_ptx": {"rate": 0.58, "ci95": [0.48, 0.68]}})
    bars_ax, scatter_ax = fig.axes
    assert [round(b.get_height(), 2) for b in bars_ax.patches] == [1.90, 1.95, 1.99, 1.96]
    assert {t.get_text() for t in scatter_ax.get_legend().get_texts()} == {"ppo", "ppo_ptx"}
    assert len(alignment_tax_figure(ppl).axes) == 1


def test_best_of_n_figure_draws_one_line_per_judge_with_kl_on_the_axis():
    curves = {"reward model": {1: 7.5, 2: 7.9, 4: 7.7}, "labeler (perfect reward)": {1: 7.5, 2: 8.5, 4: 9.4}}
    ax = best_of_n_figure(curves).axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert list(lines["reward model"].get_ydata()) == [7.5, 7.9, 7.7]
    assert lines["labeler (perfect reward)"].get_color() == model_color("gold")
    assert lines["one sample (n = 1)"].get_ydata()[0] == 7.5
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1\n0.00", "2\n0.19", "4\n0.64"]
    with pytest.raises(ValueError, match="at least one judge"):
        best_of_n_figure({})


def test_gold_kl_figure_draws_runs_as_trajectories_and_points_as_curves():
    runs = {"PPO": {"objective/kl": [0.0, 0.3, 0.6], "objective/gold": [6.0, 6.4, 6.9]}}
    points = {"labeler's best of n": {0.0: 6.0, 0.64: 8.1, 1.82: 9.0}}
    ax = gold_kl_figure(runs, points).axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    trajectory = lines["PPO (training batches)"]
    assert list(trajectory.get_xdata()) == [0.0, 0.3, 0.6] and list(trajectory.get_ydata()) == [6.0, 6.4, 6.9]
    best_of_n = lines["labeler's best of n"]
    assert list(best_of_n.get_xdata()) == [0.0, 0.64, 1.82] and best_of_n.get_color() == model_color("gold")
    assert any(list(line.get_xdata()) == [0.6] for line in ax.get_lines()), "each run ends in a dot"
    with pytest.raises(ValueError, match="at least one run"):
        gold_kl_figure({})


# --- widgets, without a front end ---------------------------------------------------------

def test_sample_browser_slider_changes_the_shown_iteration():
    samples = [[("What colour is a banana?", f"answer {it}", {"score": it})] for it in range(3)]
    w = sample_browser(samples)
    assert "answer 0" in w.html.value and "answer 0" in static_html(w)
    w.slider.value = 2  # the observer runs synchronously
    assert "answer 2" in w.html.value and "answer 0" not in w.html.value
    w.on_change({"new": 1})
    assert "answer 1" in w.html.value
    show(w)  # not in a kernel: a no-op, never an error
    bundle = w._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle and "text/html" in bundle


def test_side_by_side_pages_through_prompts_and_escapes_text():
    prompts = [f"Human: question {i}?\nAssistant:" for i in range(7)]
    responses = {"base": [f"<b>base {i}</b>" for i in range(7)], "ppo": [f"ppo {i}" for i in range(7)]}
    gold = {"base": [1.0] * 7, "ppo": [9.5] * 7}
    page = render_side_by_side_html(prompts, responses, gold, start=5, page_size=5)
    assert "question 5?" in page and "question 6?" in page and "question 4?" not in page
    assert "&lt;b&gt;base 5" in page and "<b>base" not in page and "gold 9.5" in page
    w = side_by_side(prompts, responses, gold, page_size=3)
    assert w.slider.max == 2, "7 rows in pages of 3: pages 0, 1 and 2"
    assert "question 0?" in w.html.value and "question 3?" not in w.html.value
    w.slider.value = 1
    assert "question 3?" in w.html.value and "question 0?" not in w.html.value
    w.slider.value = 2
    assert "ppo 6" in static_html(w) and "question 5?" not in w.html.value, "the last page holds the last row"
    with pytest.raises(ValueError, match="7 prompts but 2 responses from 'sft'"):
        side_by_side(prompts, {"sft": ["a", "b"]})


def test_text_scorer_rescores_when_the_response_or_prompt_changes():
    calls = []

    def score_fn(prompt, response):
        calls.append((prompt, response))
        if response == "boom":
            raise RuntimeError("bad input")
        return {"reward model": len(response) / 10, "gold": 1.0, "prompt": prompt}

    w = text_scorer(score_fn, ["Say hi.", "Name a fruit."])
    assert calls == [] and "Type a response" in w.html.value
    w.response.value = "Hello there"
    assert calls[-1] == ("Say hi.", "Hello there")
    assert "reward model" in w.html.value and "+1.100" in w.html.value
    w.prompt.value = "Name a fruit."
    assert calls[-1] == ("Name a fruit.", "Hello there") and "Name a fruit." in w.html.value
    w.response.value = "boom"
    assert "bad input" in w.html.value  # the error shows where the student is looking
    assert "Name a fruit." in static_html(text_scorer(score_fn, ["Name a fruit."], "apple"))


def test_beta_slider_moves_the_highlight_and_shows_that_runs_samples():
    w = beta_slider(SWEEP)
    assert [label for label, _ in w.slider.options] == ["0.03", "0.1", "0.3"]
    first_png = w.image.value
    assert "beta 0.03" in w.html.value and first_png[:4] == b"\x89PNG"
    w.slider.value = 0  # sweep index 0 is beta 0.3
    assert "beta 0.3" in w.html.value and w.image.value != first_png
    w.on_change({"new": 2})
    assert "beta 0.1" in w.html.value
    assert static_html(w).startswith("<img")


def test_figures_show_themselves_in_a_notebook_and_never_use_pyplot():
    before = plt.get_fignums()
    fig = bar_rates({"sft": {"rude": 0.1}}, "x")
    assert fig._repr_png_()[:4] == b"\x89PNG" and plt.get_fignums() == before
    assert matplotlib.get_backend().lower() != "module://matplotlib_inline.backend_inline"


# --- the notebook path: a real kernel, no browser ---------------------------------------------

NOTEBOOK_CELLS = [
    """from rlhf_core.notebook.dashboard import LiveDashboard
from rlhf_core.notebook.display import show
from rlhf_core.notebook.widgets import sample_browser
dash = LiveDashboard([("objective/score", "objective/gold"), "objective/kl"], title="PPO", max_overhead=None)
assert dash.live
for i in range(3):
    dash.update(i, {"objective/score": 0.1 * i, "objective/gold": 0.2 * i, "objective/kl": i},
                samples=[("prompt <i>", f"response {i}")])
dash.close()""",
    """import matplotlib.pyplot as plt
print("open figures:", len(plt.get_fignums()))
show(sample_browser([[("p", "r0", {})], [("p", "r1", {})]]))""",
]


def test_dashboard_updates_one_output_in_place_in_a_real_kernel():
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    kernelspec = pytest.importorskip("ipykernel.kernelspec")
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    class CurrentEnv(KernelSpecManager):  # the kernel of this very Python, as nbval does
        def get_kernel_spec(self, kernel_name):
            return self.kernel_spec_class(resource_dir=kernelspec.RESOURCES,
                                          **kernelspec.get_kernel_dict())

    messages = []

    class Recorder(nbclient.NotebookClient):
        def process_message(self, msg, cell, cell_index):
            messages.append((cell_index, msg["msg_type"]))
            return super().process_message(msg, cell, cell_index)

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in NOTEBOOK_CELLS])
    km = KernelManager(kernel_name="current-env", kernel_spec_manager=CurrentEnv())
    Recorder(nb, km=km, timeout=120, resources={"metadata": {"path": str(REPO)}}).execute()

    dash_msgs = [t for c, t in messages if c == 0 and t.endswith("display_data")]
    assert dash_msgs == ["display_data"] + ["update_display_data"] * 3  # 3 updates + close
    (out,) = nb.cells[0].outputs  # a single output area, holding the final figure
    assert out.output_type == "display_data"
    assert "response 2" in out.data["text/html"] and "prompt &lt;i&gt;" in out.data["text/html"]
    outs = nb.cells[1].outputs
    assert outs[0].text.strip() == "open figures: 0"
    widget = outs[1].data
    assert "application/vnd.jupyter.widget-view+json" in widget and "r0" in widget["text/html"]
    assert not any(o.output_type == "error" for c in nb.cells for o in c.outputs)


FRONTIER = [
    {"method": "PPO", "label": "15 it.", "kl": 0.4, "gold": 7.0, "gold_ci": 0.3, "samples": [("p1", "ppo early", {})]},
    {"method": "PPO", "label": "45 it.", "kl": 1.5, "gold": 8.1, "gold_ci": 0.3, "samples": [("p1", "ppo late", {})]},
    {"method": "DPO", "label": "β = 0.1", "kl": 2.0, "gold": 7.2, "samples": [("p1", "dpo <b>", {})]},
    {"method": "best-of-n, labeler", "label": "n = 4", "kl": 0.64, "gold": 8.4},
]


def test_methods_frontier_figure_draws_each_shown_method_and_rings_the_selected_point():
    fig = methods_frontier_figure(FRONTIER, sft_gold=6.4)
    ax = fig.axes[0]
    labels = ax.get_legend_handles_labels()[1]
    assert sorted(labels) == sorted(["PPO", "DPO", "best-of-n, labeler", "SFT (KL 0)"])
    ppo_line = next(line for line in ax.get_lines() if list(line.get_xdata()) == [0.4, 1.5])
    assert list(ppo_line.get_ydata()) == [7.0, 8.1]
    fig = methods_frontier_figure(FRONTIER, shown=["DPO"], selected=2)
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert labels == ["DPO"] and [a for a in fig.axes[0].get_lines() if a.get_gid() == "selected"]
    assert "β = 0.1" in fig.axes[0].get_title(loc="left")


def test_frontier_explorer_switches_methods_off_and_shows_the_chosen_points_samples():
    png, text = render_frontier(FRONTIER, ["PPO", "DPO"], 2)
    assert png[:4] == b"\x89PNG" and "dpo &lt;b&gt;" in text and "DPO, β = 0.1" in text
    assert render_frontier(FRONTIER, ["PPO"], 2)[0] != png          # DPO's line gone, its point still ringed
    w = frontier_explorer(FRONTIER, sft_gold=6.4)
    assert [box.description for box in w.methods] == ["PPO", "DPO", "best-of-n, labeler"]
    first = w.image.value
    assert "ppo early" in w.html.value
    w.point.value = 1
    assert "ppo late" in w.html.value and w.image.value != first
    shown = w.image.value
    w.methods[1].value = False
    assert w.image.value != shown and "ppo late" in w.html.value
    assert static_html(w).startswith("<img")
    with pytest.raises(ValueError, match="at least one point"):
        frontier_explorer([])
