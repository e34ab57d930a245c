"""The live notebook in a real browser: JupyterLab on a local port, driven by headless Chromium through Playwright.

nbval runs every notebook in a kernel with no front end, where the dashboard and the widgets are only their static
fallbacks. Here JupyterLab renders them: notebook 04's PPO dashboard must redraw *in place* while PPO trains (its
image changes between iterations, and the cell still holds one figure, not one per iteration), its sample slider must
change what it shows, and notebook 00's scorer must re-score a response the student types. Screenshots of each go to
runs/browser/ (printed; `pytest -s` shows it).

Chromium is Debian's package, not a browser Playwright downloads: `sudo apt-get install chromium` (.ci/run installs
it). Without it these tests are skipped, with that advice.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from rlhf_core.common.paths import RUNS_DIR

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
SCREENSHOTS = RUNS_DIR / "browser"
CHROMIUM = next((path for name in ("chromium", "chromium-browser", "google-chrome")
                 if (path := shutil.which(name))), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason=(
    "Chromium is not installed, so the live dashboard is not tested in a browser: install it with "
    "`sudo apt-get install chromium` (Debian/Ubuntu; .ci/run does) and run pytest again"))

TOKEN = "rlhf-in-miniature-browser-test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server over a scratch folder holding copies of notebooks 00 and 04 -> its base URL.

    Copies, so that JupyterLab's autosave never writes outputs into the course's notebooks; the course's paths do not
    depend on the notebook's folder (runs/ and data/ are found from rlhf_core), so the copies run as the originals."""
    root = tmp_path_factory.mktemp("lab")
    notifications = root / ".settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    notifications.parent.mkdir(parents=True)
    notifications.write_text('{"fetchNews": "false", "checkForUpdates": false}')  # no pop-up over the screenshots
    for name in ("00_welcome_and_the_mini_world.ipynb", "04_ppo.ipynb"):
        shutil.copy(NOTEBOOKS / name, root / name)
    port = free_port()
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(root / ".config"), JUPYTER_RUNTIME_DIR=str(root / ".runtime"))
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
         f"--ServerApp.root_dir={root}", f"--IdentityProvider.token={TOKEN}", "--LabApp.expose_app_in_browser=True",
         f"--LabApp.workspaces_dir={root / '.workspaces'}", f"--LabApp.user_settings_dir={root / '.settings'}",
         "--ServerApp.allow_root=True",  # containers and CI runners often run as root
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],  # offline: ask no server for news
        stdout=subprocess.DEVNULL, stderr=open(root / "server.log", "w"), env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/status?token={TOKEN}", timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not start:\n{(root / 'server.log').read_text()[-3000:]}")
                time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                              args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield chromium
        chromium.close()


class Notebook:
    """A notebook open in JupyterLab, driven through its application object (window.jupyterapp)."""

    def __init__(self, browser, lab: str, name: str):
        self.page = browser.new_page(viewport={"width": 1400, "height": 2000})  # tall: the whole dashboard in view
        # a workspace of its own, reset: only this notebook open, whatever an earlier page left
        self.page.goto(f"{lab}/lab/workspaces/{Path(name).stem}/tree/{name}?reset&token={TOKEN}")
        self.page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell", timeout=120_000)
        self.page.evaluate("""name => { window.rlhfPanel = () => Array.from(window.jupyterapp.shell.widgets("main"))
            .find(widget => widget.context && widget.context.path === name); }""", name)
        self.page.wait_for_function("""() => {
            const panel = window.rlhfPanel();
            const kernel = panel && panel.sessionContext && panel.sessionContext.session
                           && panel.sessionContext.session.kernel;
            return kernel && kernel.status === "idle" && panel.content.widgets.length > 0;
        }""", timeout=120_000)

    def index(self, cell_id: str) -> int:
        i = self.page.evaluate("id => window.rlhfPanel().content.widgets"
                               ".findIndex(cell => cell.model.id === id)", cell_id)
        assert i >= 0, f"no cell with id {cell_id!r}"
        return i

    def run(self, command: str, index: int) -> None:
        """Start `command` ("notebook:run-cell", "notebook:run-all-above", ...) with cell `index` active."""
        self.page.evaluate("""([command, index]) => {
            window.jupyterapp.shell.activateById(window.rlhfPanel().id);  // the notebook commands act on
            const notebook = window.rlhfPanel().content;
            notebook.activeCellIndex = index;
            notebook.deselectAll();
            window.jupyterapp.commands.execute(command);
        }""", [command, index])

    def wait_until_run(self, first: int, last: int, timeout: float) -> None:
        """Wait until code cells first..last have run and the kernel is idle; fail on the first error output."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.page.evaluate("""([first, last]) => {
                const panel = window.rlhfPanel();
                const cells = panel.content.widgets.slice(first, last + 1).filter(c => c.model.type === "code");
                for (const cell of cells) {
                    for (let i = 0; i < cell.model.outputs.length; i++) {
                        const output = cell.model.outputs.get(i).toJSON();
                        if (output.output_type === "error")
                            return {error: cell.model.id + ": " + output.ename + ": " + output.evalue};
                    }
                }
                const waiting = cells.filter(c => c.model.executionCount === null).map(c => c.model.id);
                const status = panel.sessionContext.session.kernel.status;
                return {done: waiting.length === 0 && status === "idle", waiting: waiting.join(", "), status: status};
            }""", [first, last])
            if state.get("error"):
                pytest.fail(f"a cell failed in the browser: {state['error']}")
            if state["done"]:
                return
            assert time.monotonic() < deadline, (f"cells {first}..{last} did not finish within {timeout:.0f} s: "
                                                 f"the kernel is {state['status']}; not run: {state['waiting']}")
            time.sleep(0.5)

    def cell(self, index: int):
        return self.page.evaluate_handle("i => window.rlhfPanel().content.widgets[i].node", index)

    def images(self, index: int) -> list[str]:
        """Digests of the images in cell `index`'s output area, in order."""
        sources = self.page.evaluate("""i => Array.from(window.rlhfPanel().content.widgets[i].node
            .querySelectorAll(".jp-OutputArea img")).map(img => img.src)""", index)
        return [hashlib.sha1(src.encode()).hexdigest() for src in sources]

    def interrupt(self) -> None:
        self.page.evaluate("() => window.jupyterapp.commands.execute('notebook:interrupt-kernel')")
        self.page.wait_for_function(
            "() => window.rlhfPanel().sessionContext.session.kernel.status === 'idle'",
            timeout=60_000)

    def screenshot(self, index: int, name: str) -> Path:
        """A PNG of cell `index`'s outputs, in runs/browser/."""
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / name
        outputs = self.cell(index).query_selector(".jp-Cell-outputWrapper")
        outputs.scroll_into_view_if_needed()
        outputs.screenshot(path=str(path))
        return path


def test_ppo_dashboard_redraws_in_place_and_the_slider_changes_the_samples(lab, browser):
    nb = Notebook(browser, lab, "04_ppo.ipynb")
    dashboard, slider = nb.index("ppo-27"), nb.index("ppo-31")
    nb.run("notebook:run-all-above", dashboard)   # imports, models (made by notebooks 02-03, or trained here)
    nb.wait_until_run(0, dashboard - 1, timeout=900)
    nb.run("notebook:run-cell", dashboard)        # PPO with the live dashboard
    seen, counts, shots = [], set(), []
    deadline = time.monotonic() + 300
    while len(seen) < 2:                          # the first figure, then a redraw of it a few iterations on
        images = nb.images(dashboard)
        counts.add(len(images))
        if images and images[-1] not in seen:
            seen.append(images[-1])
            shots.append(nb.screenshot(dashboard, f"04_dashboard_{len(seen)}.png"))
        assert time.monotonic() < deadline, f"the dashboard showed {len(seen)} distinct figures in 300 s"
        time.sleep(0.2)
    nb.interrupt()                                # enough iterations seen: stop PPO (probe_samples holds them)
    assert counts <= {0, 1}, f"the dashboard's cell held {max(counts)} figures at once: it must redraw in place"
    assert len(nb.images(dashboard)) == 1

    nb.run("notebook:run-cell", slider)
    nb.page.wait_for_function("""i => window.rlhfPanel().content.widgets[i].node
        .querySelector(".widget-slider .noUi-handle")""", arg=slider, timeout=60_000)
    node = nb.cell(slider)
    html = node.query_selector(".widget-html-content")
    before = html.inner_text()
    assert "iteration 0" in before
    node.query_selector(".noUi-handle").focus()
    nb.page.keyboard.press("ArrowRight")          # one iteration on: the answers after PPO's first update
    nb.page.wait_for_function("""([i, before]) => window.rlhfPanel().content.widgets[i].node
        .querySelector(".widget-html-content").innerText !== before""", arg=[slider, before], timeout=30_000)
    assert "iteration 1" in html.inner_text()
    shots.append(nb.screenshot(slider, "04_slider.png"))
    print(f"\nscreenshots: {', '.join(str(p) for p in shots)}")
    nb.page.close()


def test_the_scorer_rescores_what_the_student_types(lab, browser):
    nb = Notebook(browser, lab, "00_welcome_and_the_mini_world.ipynb")
    last = nb.page.evaluate("() => window.rlhfPanel().content.widgets.length") - 1
    nb.run("notebook:run-all-cells", 0)
    nb.wait_until_run(0, last, timeout=300)
    scorer = nb.page.evaluate("""() => window.rlhfPanel().content.widgets
        .findIndex(cell => cell.node.querySelector(".jp-OutputArea textarea"))""")
    assert scorer >= 0, "no scorer widget (a textarea) in notebook 00's outputs"
    node = nb.cell(scorer)
    html = node.query_selector(".widget-html-content")
    before = html.inner_text()
    box = node.query_selector("textarea")
    box.fill("You are stupid. I will not tell you.")
    box.press("Tab")                              # continuous_update=False: the value is sent when the box is left
    nb.page.wait_for_function("""([i, before]) => window.rlhfPanel().content.widgets[i].node
        .querySelector(".widget-html-content").innerText !== before""", arg=[scorer, before], timeout=30_000)
    assert html.inner_text() != before
    path = nb.screenshot(scorer, "00_scorer.png")
    print(f"\nscreenshot: {path}")
    nb.page.close()
