"""Fixtures shared by the test files."""

from pathlib import Path

import nbclient
import pytest
from jupyter_client.manager import KernelManager
from nbformat.v4 import new_code_cell, new_notebook


@pytest.fixture(scope="session")
def run_notebook():
    """run_notebook(nb, folder): execute `nb` as a fresh kernel in `folder` would, in one kernel kept for the session.

    Starting a kernel and importing the course (torch, transformers, matplotlib) costs seconds each time; the
    student-copy tests run eight small notebooks. Before each one the kernel's namespace is cleared (`%reset -f`)
    and its working folder set, so a notebook sees none of the previous one's names; only the imported modules
    stay loaded. Raises nbclient's CellExecutionError at the first failing cell, like `NotebookClient.execute`.
    """
    km = KernelManager(kernel_name="python3")
    km.start_kernel()

    def execute(nb, timeout):
        client = nbclient.NotebookClient(nb, km=km, timeout=timeout)  # km given: the client leaves the kernel running
        try:
            client.execute()
        finally:
            if client.kc is not None:
                client.kc.stop_channels()

    def run(nb, folder: Path, timeout: int = 900):
        execute(new_notebook(cells=[new_code_cell(f"%reset -f\nimport os\nos.chdir({str(folder)!r})")]), 60)
        execute(nb, timeout)
        return nb

    yield run
    km.shutdown_kernel(now=True)


def pytest_collection_modifyitems(session, config, items):
    """The browser test (tests/test_browser.py) last, after the notebooks: it opens notebook 04, which loads the SFT
    model and reward model that notebooks 02 and 03 save, so run after them it reuses them instead of training its own.
    A stable sort: everything else keeps its order."""
    items.sort(key=lambda item: item.nodeid.startswith("tests/test_browser.py"))
