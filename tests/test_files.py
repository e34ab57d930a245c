"""Atomic writes: an interrupted write leaves the old file or checkpoint as it was, and no temporaries behind."""
import os

import pytest
import torch

from rlhf_core import load_base, save_checkpoint
from rlhf_core.common.files import atomic_file, atomic_folder
from rlhf_core.models.heads import RewardModel


def leftovers(folder):
    return sorted(name for name in os.listdir(folder) if name.startswith("."))


def test_atomic_file_writes_and_an_error_keeps_the_old_file(tmp_path):
    path = tmp_path / "sub" / "data.jsonl"
    with atomic_file(path) as f:
        f.write("old\n")
    assert path.read_text() == "old\n" and oct(path.stat().st_mode & 0o777) == "0o644"
    with pytest.raises(RuntimeError):
        with atomic_file(path) as f:
            f.write("half")
            raise RuntimeError("interrupted")
    assert path.read_text() == "old\n" and leftovers(path.parent) == []
    with atomic_file(path, "wb") as f:
        f.write(b"\x00new")
    assert path.read_bytes() == b"\x00new"


def test_atomic_folder_replaces_the_old_one_only_when_complete(tmp_path):
    path = tmp_path / "ckpt"
    with atomic_folder(path) as folder:
        (folder / "a.txt").write_text("1")
    with pytest.raises(KeyboardInterrupt):
        with atomic_folder(path) as folder:
            (folder / "a.txt").write_text("2")
            raise KeyboardInterrupt
    assert (path / "a.txt").read_text() == "1" and leftovers(tmp_path) == []
    with atomic_folder(path) as folder:
        (folder / "b.txt").write_text("3")
    assert sorted(os.listdir(path)) == ["b.txt"] and leftovers(tmp_path) == []


def interrupt_the_swap(monkeypatch):
    """Make the rename that puts a new folder in place fail, as if the process were killed at that moment."""
    import rlhf_core.common.files

    real_replace = os.replace

    def replace(source, destination):
        if ".tmp-" in os.fspath(source):
            raise KeyboardInterrupt
        return real_replace(source, destination)

    monkeypatch.setattr(rlhf_core.common.files.os, "replace", replace)


def test_an_interrupted_save_checkpoint_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    model, tokenizer = load_base("tiny")
    path = save_checkpoint(model, tokenizer, tmp_path / "sft-tiny")
    with torch.no_grad():
        model.transformer.wte.weight.add_(1.0)  # a different model, which must not reach the disk
    interrupt_the_swap(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(model, tokenizer, path)
    monkeypatch.undo()
    reloaded, _ = load_base(str(path))
    torch.testing.assert_close(reloaded.transformer.wte.weight, model.transformer.wte.weight - 1.0)
    assert leftovers(tmp_path) == []


def test_an_interrupted_reward_model_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    model, _ = load_base("tiny")
    reward_model = RewardModel.from_causal_lm(model)
    path = tmp_path / "rm-tiny"
    reward_model.save_pretrained(path)
    with torch.no_grad():
        reward_model.head.weight.add_(1.0)
    interrupt_the_swap(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        reward_model.save_pretrained(path)
    monkeypatch.undo()
    torch.testing.assert_close(RewardModel.from_pretrained(path).head.weight, reward_model.head.weight - 1.0)
    assert leftovers(tmp_path) == []


def test_save_checkpoint_writes_the_extra_files_with_the_model_or_not_at_all(tmp_path):
    model, tokenizer = load_base("tiny")
    path = save_checkpoint(model, tokenizer, tmp_path / "base",
                           extra=lambda folder: (folder / "log.json").write_text("1"))
    assert (path / "log.json").read_text() == "1" and (path / "model.safetensors").exists()

    def fails(folder):
        (folder / "log.json").write_text("2")
        raise RuntimeError("the plot failed")

    with pytest.raises(RuntimeError):
        save_checkpoint(model, tokenizer, path, extra=fails)
    assert (path / "log.json").read_text() == "1" and leftovers(tmp_path) == []
