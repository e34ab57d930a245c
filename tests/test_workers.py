"""How `pytest --nbval` shares the machine between its two workers (tests/conftest.py): which notebook runs where,
and how many torch threads each worker's kernels get."""
from __future__ import annotations

import json
import os
import re
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from nbformat.v4 import new_code_cell, new_notebook
import conftest
from conftest import (PREPARES, STAGE_CHAIN, SUITE_WORKERS, WAITS_FOR, prepare_sft, pytest_cmdline_main, suite_group,
                      wait_for_checkpoint, wait_for_prepared, worker_threads)

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))


def code_of(path: Path) -> str:
    return "\n".join("".join(cell["source"]) for cell in json.loads(path.read_text())["cells"]
                     if cell["cell_type"] == "code")


def test_every_notebook_that_saves_a_checkpoint_runs_in_the_stage_chain_in_order():
    """Two workers must never train and write the same checkpoint: every notebook that saves one (or trains PPO on
    the way to loading it) is on the stage worker, in the order the checkpoints are made."""
    saves = re.compile(r"\bsave_(sft|reward_model|ppo)\(|load_or_train_ppo\(")
    saving = [p.name for p in NOTEBOOKS if saves.search(code_of(p))]
    assert saving == [p.name for p in NOTEBOOKS if suite_group(f"notebooks/{p.name}::Cell 0") == "stages"]
    assert [name[:3] for name in saving] == list(STAGE_CHAIN)


def test_the_other_worker_runs_the_unit_tests_and_the_notebooks_that_only_load():
    rest = [p for p in NOTEBOOKS if suite_group(f"notebooks/{p.name}::Cell 3") == "rest"]
    assert [p.name[:3] for p in rest] == ["00_", "01_", "07_"]
    for path in rest:  # at most the SFT model and the reward model, which the chain saves first (02, 03)
        loads = set(re.findall(r"load_or_train_(\w+)\(", code_of(path)))
        assert loads <= {"sft", "reward_model"}, (path.name, loads)
    for nodeid in ("tests/test_losses.py::test_whiten", "tests/test_browser.py::test_x[a::b]",
                   "notebooks_old/02_x.ipynb::Cell 1"):
        assert suite_group(nodeid) == "rest"


def test_a_notebook_of_the_other_worker_waits_only_for_what_it_loads():
    for path, waits in WAITS_FOR.items():
        assert suite_group(f"{path}::Cell 0") == "rest"
        code = code_of(Path(__file__).resolve().parent.parent / path)
        assert set(re.findall(r"load_or_train_(\w+)\(", code)) == {"sft", "reward_model"}
        # the reward model is saved after the SFT model; notebook 04's PPO run after both
        assert waits == {"load_or_train_reward_model(": "rm", "load_ppo_run(": "ppo"}
        assert all(call in code for call in waits)


def test_the_other_worker_waits_before_the_cell_that_loads_a_checkpoint_and_only_once(monkeypatch):
    """pytest_runtest_setup on the "rest" worker: notebook 07 waits for runs/rm-tiny before the cell that loads the
    reward model, for runs/ppo-tiny before the one that reads back notebook 04's run, and at no other cell."""
    from rlhf_core.common.paths import run_path

    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw1")
    monkeypatch.setattr(conftest, "_both_sides", True)
    monkeypatch.setattr(conftest, "_waited", set())
    waited = []
    monkeypatch.setattr(conftest, "wait_for_checkpoint", lambda folder, since, timeout: waited.append(folder.name))
    notebook = "notebooks/07_beyond_ppo.ipynb"
    cells = ["import torch", "rm = load_or_train_reward_model('tiny')", "x = 1",
             "saved = load_ppo_run('tiny', config, [15])", "again = load_ppo_run('tiny')"]
    seen = []
    for i, source in enumerate(cells):
        item = SimpleNamespace(nodeid=f"{notebook}::Cell {i}", cell=SimpleNamespace(source=source),
                               config=SimpleNamespace(workerinput={"testrunuid": "run"}))
        conftest.pytest_runtest_setup(item)
        seen.append(list(waited))
    assert seen == [[], [run_path("rm").name], [run_path("rm").name]] + [[run_path("rm").name, run_path("ppo").name]] * 2


def test_waiting_for_a_checkpoint_ends_when_this_run_saves_it_and_not_before(tmp_path):
    folder = tmp_path / "rm-tiny"
    start = time.time()
    assert not wait_for_checkpoint(folder, start, timeout=0.2, poll=0.05)       # not there: gives up
    folder.mkdir()
    os.utime(folder, (start - 60, start - 60))
    assert not wait_for_checkpoint(folder, start, timeout=0.2, poll=0.05)       # there, but from an earlier run
    later = threading.Timer(0.3, lambda: os.utime(folder, None))                 # this run saves it 0.3 s from now
    later.start()
    began = time.monotonic()
    assert wait_for_checkpoint(folder, start, timeout=10, poll=0.05)
    assert 0.25 <= time.monotonic() - began < 5
    later.join()


def test_the_model_the_other_worker_prepares_is_one_no_notebook_saves_or_needs_sooner():
    """The "rest" worker trains runs/sft-{base} before its first test, for a notebook of the chain. No notebook may
    save that model (`save_sft`), and no notebook of the chain before that one may load or train it: either could
    write it while the other worker does. (The other worker's own notebooks run after it has.)"""
    for notebook, base in PREPARES.items():
        assert suite_group(f"{notebook}::Cell 0") == "stages" and base != "tiny"
        asks = re.compile(rf"load_or_train_sft\(\s*[\"']{base}[\"']")
        saves = re.compile(rf"save_sft\([^)]*[\"']{base}[\"']")
        assert asks.search(code_of(Path(__file__).resolve().parent.parent / notebook))
        for path in NOTEBOOKS:
            assert not saves.search(code_of(path)), path.name
            if suite_group(f"notebooks/{path.name}::Cell 0") == "stages" and path.name < Path(notebook).name:
                assert not asks.search(code_of(path)), path.name


def test_a_prepared_model_is_ready_only_for_the_run_that_prepared_it(tmp_path, monkeypatch):
    marker = tmp_path / ".suite" / "sft-small.ready"
    monkeypatch.setattr(conftest, "prepared_marker", lambda base: marker)
    trained = []
    monkeypatch.setattr("rlhf_core.stages.sft.load_or_train_sft", lambda base, progress: trained.append(base))
    assert not wait_for_prepared("small", "run-1", timeout=0.2, poll=0.05)   # nothing there yet
    marker.parent.mkdir()
    marker.write_text("run-0")                                               # an earlier run's mark
    assert not wait_for_prepared("small", "run-1", timeout=0.2, poll=0.05)
    later = threading.Timer(0.3, prepare_sft, ("small", "run-1"))             # this run prepares it 0.3 s from now
    later.start()
    began = time.monotonic()
    assert wait_for_prepared("small", "run-1", timeout=10, poll=0.05)
    assert 0.25 <= time.monotonic() - began < 5 and trained == ["small"]
    later.join()


def test_a_model_that_fails_to_prepare_is_marked_so_the_notebook_need_not_wait(tmp_path, monkeypatch):
    marker = tmp_path / "sft-small.ready"
    monkeypatch.setattr(conftest, "prepared_marker", lambda base: marker)

    def fails(base, progress):
        raise RuntimeError("NaN in the SFT loss")

    monkeypatch.setattr("rlhf_core.stages.sft.load_or_train_sft", fails)
    with pytest.warns(UserWarning, match=r"runs/sft-small .*NaN in the SFT loss"):
        prepare_sft("small", "run-2")  # the test it runs before does not fail for it
    assert wait_for_prepared("small", "run-2", timeout=0)  # notebook 05 goes on at once, and trains it itself


@pytest.mark.parametrize("cores, workers, threads", [(2, 2, 1), (8, 2, 4), (1, 2, 1), (3, 2, 1), (4, 1, 4),
                                                     (2, 0, 2)])
def test_worker_threads_split_the_cores(cores, workers, threads):
    assert worker_threads(cores, workers) == threads


def fake_config(numprocesses, usepdb=False):
    return SimpleNamespace(option=SimpleNamespace(numprocesses=numprocesses),
                           getoption=lambda name, default=None: usepdb if name == "usepdb" else default)


@pytest.mark.parametrize("given, usepdb, in_worker, workers", [
    (None, False, False, SUITE_WORKERS),  # plain `pytest --nbval`: the two workers
    (0, False, False, 0),                 # -n 0: one process on every core
    (3, False, False, 3),                 # -n 3: as asked
    (None, True, False, None),            # --pdb cannot debug inside a worker
    (None, False, True, None),            # a worker starts no workers of its own
])
def test_the_suite_starts_its_workers_unless_told_otherwise(monkeypatch, given, usepdb, in_worker, workers):
    if in_worker:
        monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw0")
    else:
        monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    config = fake_config(given, usepdb)
    pytest_cmdline_main(config)
    assert config.option.numprocesses == workers


@pytest.mark.skipif(not os.environ.get("PYTEST_XDIST_WORKER"), reason="runs inside a pytest-xdist worker only")
def test_a_worker_and_the_kernels_it_starts_use_their_share_of_the_cores(run_notebook, tmp_path):
    from rlhf_core.models.loading import available_cores

    share = worker_threads(available_cores(), int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    if os.environ["RLHF_THREADS"] != str(share):
        pytest.skip("RLHF_THREADS was set by the caller")
    assert torch.get_num_threads() == share
    nb = run_notebook(new_notebook(cells=[new_code_cell("import rlhf_core, torch\nprint(torch.get_num_threads())")]),
                      tmp_path)
    assert nb.cells[0].outputs[0]["text"].strip() == str(share)  # what a notebook's kernel runs on
