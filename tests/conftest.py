"""Fixtures shared by the test files, and how `pytest --nbval` shares the machine between its two workers."""

import os
import time
import warnings
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


# `pytest --nbval` runs in two worker processes (pytest-xdist), each on half the cores. The course's models are
# small: a tiny-model PPO iteration is only 1.3x faster on 2 threads than on 1, so two one-thread workers finish the
# suite sooner than one two-thread process. The notebooks that make and reuse the checkpoints (02 SFT -> 03 reward
# model -> 04 PPO -> 05, 06) run in order on one worker, so none trains a model another is still training;
# everything else (the unit tests, 00, 01, 07, the browser test) runs in order on the other. 07 loads the SFT model
# and the reward model, and reads back notebook 04's PPO run: before the cell that loads each, it waits until the chain
# has saved it (`pytest_runtest_setup`), as a run in one process would find them. The chain is the
# longer side, so the other worker first trains the one model of the chain that depends on nothing the chain makes,
# the `small` SFT model notebook 05 compares with, which notebook 05 then loads (`PREPARES`). The workers start
# only where this file is loaded (the whole suite, or unit tests): a run of notebooks alone stays in one process,
# where nothing would keep two of them from training the same checkpoint at once.
SUITE_WORKERS = 2
STAGE_CHAIN = ("02_", "03_", "04_", "05_", "06_")


def suite_group(nodeid: str) -> str:
    """The worker group of a test item: "stages" for the checkpoint chain's notebooks, "rest" for everything else."""
    path = nodeid.split("::")[0]
    name = path.rsplit("/", 1)[-1]
    return "stages" if path.startswith("notebooks/") and name.startswith(STAGE_CHAIN) else "rest"


def worker_threads(cores: int, workers: int) -> int:
    """Torch threads for each of `workers` processes sharing `cores`: the cores split evenly, at least one each."""
    return max(1, cores // max(1, workers))


if os.environ.get("PYTEST_XDIST_WORKER") and not os.environ.get("RLHF_THREADS"):
    # Set before any kernel starts: the notebooks' kernels inherit it, and rlhf_core reads it at import.
    from rlhf_core.models.loading import available_cores, set_threads

    os.environ["RLHF_THREADS"] = str(worker_threads(available_cores(),
                                                   int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))))
    set_threads()


# a notebook of the "rest" worker -> {the call in its code that loads a checkpoint of the chain: that checkpoint}
WAITS_FOR = {"notebooks/07_beyond_ppo.ipynb": {"load_or_train_reward_model(": "rm", "load_ppo_run(": "ppo"}}
# a notebook of the chain -> the base whose SFT model the "rest" worker trains for it, before its own first test
PREPARES = {"notebooks/05_evaluation.ipynb": "small"}
SESSION_START = time.time()  # this process's start: a checkpoint saved since was saved by this run
_waited: set = set()  # notebooks of PREPARES, and (notebook, stage) of WAITS_FOR, already waited for
_both_sides: bool | None = None  # does this run hold both workers' sides? (set at the first test)


def wait_until(ready, timeout: float, poll: float = 2.0) -> bool:
    """Wait until ready() is true; False if `timeout` seconds pass first."""
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll)
    return True


def wait_for_checkpoint(folder: Path, since: float, timeout: float, poll: float = 2.0) -> bool:
    """Wait until `folder` exists and was written at or after `since` (a time.time()); False if `timeout` seconds
    pass first. Checkpoints are written whole and then renamed into place, so once it is there it is complete."""
    return wait_until(lambda: folder.is_dir() and folder.stat().st_mtime >= since, timeout, poll)


def prepared_marker(base: str) -> Path:
    """The file that says runs/sft-{base} is ready: the "rest" worker writes this run's id (xdist's testrunuid) in it."""
    from rlhf_core.common.paths import RUNS_DIR

    return RUNS_DIR / ".suite" / f"sft-{base}.ready"


def prepare_sft(base: str, run_id: str) -> None:
    """Load or train runs/sft-{base} as the notebook that needs it would, then mark it ready for run `run_id`.
    If that fails, a warning says why and the mark is written all the same: the notebook, not the unrelated test
    this runs before, then trains the model itself and fails where the failure belongs."""
    from rlhf_core.stages.sft import load_or_train_sft

    try:
        load_or_train_sft(base, progress=False)
    except Exception as error:  # noqa: BLE001 - reported, and raised again by the notebook that needs the model
        warnings.warn(f"could not prepare runs/sft-{base} for the chain's notebook ({error!r}); it will train it")
    marker = prepared_marker(base)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(run_id)


def wait_for_prepared(base: str, run_id: str, timeout: float, poll: float = 2.0) -> bool:
    """Wait until the "rest" worker of run `run_id` has marked runs/sft-{base} ready; False after `timeout` s."""
    marker = prepared_marker(base)
    return wait_until(lambda: marker.is_file() and marker.read_text() == run_id, timeout, poll)


def pytest_runtest_setup(item):
    """Only under the two workers and only where the run holds both sides (a run without the chain, or without the
    other side, goes on as it would alone: each notebook loads what is there and trains what is not):
    - before the "rest" worker's first test: train the SFT models `PREPARES` names (one minute for `small`);
    - before the cell of notebook 07 that loads the reward model (and so the SFT model saved before it), and before
      the one that reads back notebook 04's PPO run, on that worker: wait, up to 15 minutes each, until the chain has
      saved it, as a run in one process would find them, rather than train a second copy beside it;
    - before notebook 05's first cell, on the chain: wait, up to 15 minutes, until the other worker has its `small`
      SFT model ready (it is long before: the chain reaches 05 after 02, 03 and 04).
    A notebook whose wait runs out trains what it does not find."""
    global _both_sides
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    run_id = item.config.workerinput["testrunuid"]
    if _both_sides is None:  # the first test this worker runs
        paths = {other.nodeid.split("::")[0] for other in item.session.items}
        _both_sides = {suite_group(path) for path in paths} == {"stages", "rest"}
        if _both_sides and suite_group(item.nodeid) == "rest":
            for notebook, base in PREPARES.items():
                if notebook in paths:
                    prepare_sft(base, run_id)
    path = item.nodeid.split("::")[0]
    if not _both_sides or path in _waited:
        return
    if path in WAITS_FOR:
        from rlhf_core.common.paths import run_path

        source = getattr(getattr(item, "cell", None), "source", "")  # an nbval item's cell; "" for any other item
        for call, stage in WAITS_FOR[path].items():
            if call in source and (path, stage) not in _waited:
                _waited.add((path, stage))
                wait_for_checkpoint(run_path(stage), SESSION_START, timeout=900)
    elif path in PREPARES:
        _waited.add(path)
        wait_for_prepared(PREPARES[path], run_id, timeout=900)


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads -n
def pytest_cmdline_main(config):
    """SUITE_WORKERS workers, unless -n was given (`-n 0`: one process on every core), or --pdb."""
    if (getattr(config.option, "numprocesses", 0) is None and not os.environ.get("PYTEST_XDIST_WORKER")
            and not config.getoption("usepdb", False)):
        config.option.numprocesses = SUITE_WORKERS


def pytest_xdist_make_scheduler(config, log):
    """Each `suite_group` whole on one worker, in collection order. (pytest-xdist's own `--dist loadgroup` cannot
    regroup items under pytest 9, whose node ids it can no longer rewrite.)"""
    from xdist.scheduler import LoadScopeScheduling

    class SuiteScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return suite_group(nodeid)

    return SuiteScheduling(config, log)


def pytest_collection_modifyitems(session, config, items):
    """The browser test (tests/test_browser.py) last, after the notebooks: it opens notebook 04, which loads the SFT
    model and reward model that notebooks 02 and 03 save, so run after them it reuses them instead of training its own.
    A stable sort: everything else keeps its order."""
    items.sort(key=lambda item: item.nodeid.startswith("tests/test_browser.py"))
