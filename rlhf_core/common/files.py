"""Atomic writes: a file or a checkpoint folder is either the old one or the complete new one, never half-written.

    with atomic_file("data/sft.jsonl") as f:        # a temp file beside the destination ...
        f.write(...)                                 # ... which replaces it only when the block ends cleanly
    with atomic_folder("runs/sft-tiny") as folder:  # a temp folder beside it, filled by save_pretrained & co.
        model.save_pretrained(folder)

An error or a KeyboardInterrupt inside the block removes the temporary and leaves the destination as it was.
Every writer in the course (data files, figures, notebooks, results, checkpoints) goes through these two.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "w", **open_kwargs):
    """Open a temp file beside `path` for writing; when the block ends without error, `os.replace` puts it at
    `path` in one step (readable by everyone, like a file written normally). Text mode writes UTF-8 and "\\n"."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if "b" not in mode:
        open_kwargs = {"encoding": "utf-8", "newline": "\n"} | open_kwargs
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, mode, **open_kwargs) as file:
            yield file
        os.chmod(temporary, 0o644)  # mkstemp makes it private; course files are for everyone
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_folder(path: str | os.PathLike):
    """Yield a temp folder beside `path` to fill; when the block ends without error it takes `path`'s place.

    The old folder stays in place until the new one is complete, then the two are swapped with two renames
    (the old one aside, the new one in), and the old one is deleted last; if the second rename fails, the old
    folder is put back. So `path` is never half-written, and is missing only between two renames.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.tmp-"))
    try:
        os.chmod(temporary, 0o755)  # mkdtemp makes it private; checkpoints are for everyone
        yield temporary
        if not path.exists():
            os.replace(temporary, path)
            return
        aside = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.old-")) / "previous"
        os.replace(path, aside)
        try:
            os.replace(temporary, path)
        except BaseException:
            os.replace(aside, path)  # put the old one back
            shutil.rmtree(aside.parent, ignore_errors=True)
            raise
        shutil.rmtree(aside.parent, ignore_errors=True)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
