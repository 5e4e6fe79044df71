"""Naming and making run folders: light (no torch), so the CLI names a run folder before torch loads."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path


def new_stamped_dir(output: Path | str, name: str, what: str = "the run folder") -> Path:
    """<output>/<name>-<timestamp>[-k]: created now, never reused (run folders and seed-group folders)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path(output) / f"{name}-{stamp}"
    path, k = base, 1
    while True:
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            k += 1
            path = base.with_name(f"{base.name}-{k}")
        except OSError as exc:
            from factorlab.files import unwritable_error

            raise unwritable_error(path, exc, what) from None


def new_run_dir(recipe) -> Path:
    """runs/<name>-<timestamp>[-k] (`run.output`, `run.name` of `recipe`): created now, never reused."""
    return new_stamped_dir(recipe.run.output, recipe.run.name)


def discard_unused_run_dir(rundir: Path) -> None:
    """Remove a run folder that set-up failed to fill (nothing but the resolved recipe): no empty runs to list."""
    rundir = Path(rundir)
    if rundir.is_dir() and {p.name for p in rundir.iterdir()} <= {"recipe.toml"}:
        with contextlib.suppress(OSError):
            (rundir / "recipe.toml").unlink(missing_ok=True)
            rundir.rmdir()


def lock_holder_alive(owner: dict) -> bool | None:
    """Whether the process named by a run folder's lock ({'pid', 'host', ...}) is running: True or False for a
    process on this machine, None when that cannot be told (another machine, or no pid)."""
    import os
    import socket

    pid = owner.get("pid")
    if owner.get("host") != socket.gethostname() or not isinstance(pid, int):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True
