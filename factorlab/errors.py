"""Errors meant for people: the CLI prints them without a traceback and exits 2."""

from __future__ import annotations

import errno
import shutil
import sys
from pathlib import Path

#: errno values that mean "no space left".
FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
#: errno values that mean "not allowed to write here" (read-only file system, permissions).
DENIED = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})


def short_path(path: str | Path, limit: int = 160) -> str:
    """A path for a message, its middle cut when it is longer than `limit` characters."""
    text = str(path)
    return text if len(text) <= limit else f"{text[: limit // 2]}...{text[-limit // 2 :]}"


def os_reason(exc: OSError) -> str:
    """Why an OSError happened, in words ("read-only file system" rather than errno 30's terse text)."""
    return "read-only file system" if exc.errno == errno.EROFS else (exc.strerror or type(exc).__name__)


class FactorlabError(Exception):
    """A user-facing error: what went wrong, where, and how to fix it."""


class RecipeError(FactorlabError):
    """A recipe (TOML file or override) is not valid."""


class UnknownNameError(FactorlabError):
    """A name that is not registered; the message lists the choices."""


class PluginError(FactorlabError):
    """A plugin is broken (duplicate name, bad registration)."""


class DataError(FactorlabError):
    """A data set is missing, malformed or empty."""


class OutputError(FactorlabError):
    """An output location cannot be written (read-only, no permission, not a folder)."""


class DiskFullError(OutputError):
    """A write ran out of disk space."""


class RunFolderError(FactorlabError):
    """A run folder is in use, damaged, or does not fit the recipe it is resumed with."""


class ResourceError(FactorlabError):
    """A request would need more memory (or other resources) than the machine has."""


def disk_full_error(path: Path, exc: BaseException | None = None) -> DiskFullError:
    """The message for a write that ran out of space: a full disk, a used-up quota or a file-size limit."""
    path = Path(path)
    where = path.parent
    try:
        free = f"{shutil.disk_usage(where).free / 2**20:.1f} MiB free"
    except OSError:
        free = "free space unknown"
    reason = f" ({exc.strerror})" if isinstance(exc, OSError) and exc.strerror else ""
    code = exc.errno if isinstance(exc, OSError) else errno.ENOSPC
    what, fix = {
        errno.EDQUOT: ("your disk quota is used up", "Free some of your space"),
        errno.EFBIG: (
            "a file grew past the largest size allowed (the file system's limit, or `ulimit -f`)",
            "Raise it",
        ),
    }.get(code, ("the disk is full", "Free some space"))
    return DiskFullError(
        f"{what}: could not write {path}{reason}; {free} on the file system of {where}. "
        f"Nothing half-written was kept. {fix} (or choose another output folder) and run the command "
        "again; an interrupted run continues with `factorlab run --resume RUNDIR`."
    )


def as_user_error(exc: BaseException) -> FactorlabError | None:
    """The user error behind an exception that escaped the specific checks, or None for a real bug.

    A last net for the CLI: a full disk, a read-only or forbidden place, or an allocation the machine
    cannot satisfy are the user's to fix, wherever they happen.
    """
    if isinstance(exc, OSError) and exc.errno in FULL:
        return disk_full_error(exc.filename or "(a file)", exc)
    if isinstance(exc, OSError) and exc.errno in DENIED:
        where = f" {exc.filename}" if exc.filename else ""
        return OutputError(
            f"cannot use{where}: {os_reason(exc)}. Choose a location you can write to (or fix its permissions) and run the "
            "command again."
        )
    if isinstance(exc, OSError) and exc.errno == errno.ENAMETOOLONG:
        name = short_path(exc.filename) if exc.filename else "a file name"
        return OutputError(
            f"file name too long: {name}. A name may have at most 255 bytes (a whole path 4096); choose a shorter "
            "one and run the command again."
        )
    if isinstance(exc, OSError) and exc.errno in (errno.EISDIR, errno.ENOTDIR):
        kind = "a folder where a file" if exc.errno == errno.EISDIR else "a file where a folder"
        where = short_path(exc.filename) if exc.filename else "a path"
        return OutputError(f"{where}: found {kind} was expected. Move it away (or name another path) and run again.")
    # torch raises a RuntimeError on the CPU ("DefaultCPUAllocator: can't allocate memory") and
    # torch.OutOfMemoryError (a RuntimeError) on a GPU, not MemoryError. torch is only looked up, never imported
    # here (the CLI stays torch-free until a command needs it): if it is not loaded, it raised nothing.
    torch = sys.modules.get("torch")
    # torch.OutOfMemoryError from torch 2.5; torch.cuda.OutOfMemoryError (the same class since) before
    oom = None if torch is None else getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError
    out_of_memory = isinstance(exc, MemoryError) or (oom is not None and isinstance(exc, oom))
    if out_of_memory or (isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc)):
        return ResourceError(
            "out of memory: the request needs more memory than the machine has free; ask for less (a smaller "
            "run.batch_size or data.image_size for training, fewer pairs or samples for swaps and evaluation)"
        )
    return None
