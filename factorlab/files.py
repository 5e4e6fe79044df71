"""Safe file access: atomic writes with the user's umask, clear errors for unwritable places and full disks,
and reading torch files without passing on torch's advice to load them unsafely.

A reader (or a resumed run) sees the old file or the whole new one, never half.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

try:
    import resource  # Unix: the process's file-size limit
except ImportError:  # Windows
    resource = None

# disk_full_error and FULL re-exported: errors owns them
from factorlab.errors import DENIED, FULL, OutputError, disk_full_error, os_reason

#: errno values that mean "this place cannot be written" (as opposed to a bug).
UNWRITABLE = DENIED | {errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EEXIST}


def current_umask() -> int:
    """The process's umask (read from /proc where possible: setting it to probe is not thread-safe)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def unwritable_error(path: Path, exc: OSError, what: str = "") -> OutputError:
    """The message for a place that cannot be written (read-only, no permission, not a folder)."""
    target = Path(exc.filename) if getattr(exc, "filename", None) else Path(path)
    reason = os_reason(exc)
    label = f"{what} " if what else ""
    return OutputError(
        f"cannot write {label}{path}: {target}: {reason}. Choose a writable location (or fix the folder's "
        "permissions) and run the command again."
    )


def _out_of_space(exc: BaseException, tmp: Path) -> OSError | None:
    """The full disk, used-up quota or file-size limit behind a failed write to `tmp`, or None.

    Some writers (torch.save) hide the OSError in their own RuntimeError, so the disk and the process's
    file-size limit (`ulimit -f`, RLIMIT_FSIZE) are looked at themselves.
    """
    if isinstance(exc, OSError) and exc.errno in FULL:
        return exc
    if not isinstance(exc, Exception):
        return None
    try:
        if shutil.disk_usage(tmp.parent).free < 2**20:
            return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0] if resource else None
        if limit is not None and limit != resource.RLIM_INFINITY and tmp.stat().st_size >= limit - 2**16:
            return OSError(errno.EFBIG, os.strerror(errno.EFBIG))
    except OSError:
        pass
    return None


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp)` on a temporary file beside `path`, flush it to disk, then rename it into place.

    The file gets the permissions a plain `open()` would give (0666 less the umask: 0644 by default).
    A full disk raises DiskFullError and an unwritable place OutputError, both naming the path.
    """
    path = Path(path)
    if path.is_symlink():  # write through the link: the file it names is replaced, the link stays
        path = path.resolve()
    if path.exists() and not path.is_file():  # a folder, a device, a FIFO: renaming over it would destroy it
        kind = "a folder" if path.is_dir() else "not a regular file (a device, a FIFO or a socket)"
        raise OutputError(f"cannot write {path}: it is {kind}. Name a file and run the command again.")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # the temporary name stays within the 255 bytes a file name may have, whatever the target's length
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name[:64]}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        if exc.errno in FULL:
            raise disk_full_error(path, exc) from None
        if exc.errno in UNWRITABLE:
            raise unwritable_error(path, exc) from None
        raise
    try:
        os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp makes 0600: a group could not share the run folder
    finally:
        os.close(fd)
    try:
        write(Path(tmp))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        full = _out_of_space(exc, Path(tmp))
        Path(tmp).unlink(missing_ok=True)
        if full is not None:
            raise disk_full_error(path, full) from None
        if isinstance(exc, OSError) and exc.errno in UNWRITABLE:
            raise unwritable_error(path, exc) from None
        raise
    return path


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    """Atomically write bytes."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: Path, text: str) -> Path:
    """Atomically write UTF-8 text."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def check_writable_dir(path: Path, what: str) -> Path:
    """An OutputError unless files can be created in folder `path` (or, when it does not exist yet, in its
    nearest existing parent). Probes with a real temporary file: permission bits do not stop root, a
    read-only mount or /proc does."""
    path = Path(path)
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise OutputError(f"{what} {path}: {probe} is a file, not a folder; choose a folder")
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as exc:
        if exc.errno in FULL:
            raise disk_full_error(probe / "x", exc) from None
        raise OutputError(
            f"cannot write {what} {path}: no file can be created in {probe} ({os_reason(exc)}). Choose a writable location "
            "(or fix the folder's permissions) and run the command again."
        ) from None
    return path


def describe_torch_load_failure(path: Path, exc: BaseException) -> str:
    """Why `torch.load(path, weights_only=True)` failed, in words for people.

    torch's own text is never passed on: for files that need pickled code it advises loading them with
    the unsafe `weights_only` switch, which a user must not be told to do with a file they cannot trust.
    """
    path = Path(path)
    if path.is_dir():
        return f"{path} is a folder, not a file"
    size = path.stat().st_size
    if size == 0:
        return f"{path} is empty (0 bytes): it was not written completely; copy or write it again"
    with open(path, "rb") as f:
        head = f.read(64)
    import zipfile

    text = head.lstrip()
    if text[:1] in (b"{", b"["):
        return f"{path} is JSON text ({size} bytes), not a weight or checkpoint file"
    if zipfile.is_zipfile(path):
        message = str(exc)
        if "Unsupported global" in message or "weights_only" in message.lower() or "GLOBAL" in message:
            return (
                f"{path} refers to Python code or classes that factorlab does not load (only plain tensors are read, "
                "never pickled code): it is not a file factorlab wrote, or it was made by another program. Use a "
                "checkpoint written by factorlab, or re-save the weights as a plain state dict of tensors or as "
                "safetensors from a trusted environment"
            )
        return f"{path} is a damaged or truncated torch file ({size} bytes); copy or write it again"
    if head[:2] == b"PK":  # a zip archive whose end (the central directory) is missing
        return f"{path} is a damaged or truncated torch file ({size} bytes); copy or write it again"
    if head[:1] == b"\x80":  # a legacy (non-zip) pickle file
        return (
            f"{path} is a legacy pickle file ({size} bytes) that refers to objects factorlab does not load "
            "(only plain tensors are read, never pickled code); re-save it as a state dict of tensors with a "
            "current torch.save, or as safetensors, from a trusted environment"
        )
    return f"{path} is not a torch file ({size} bytes that are neither a torch zip archive nor safetensors)"


def read_json_object(path: Path) -> dict | None:
    """A JSON object from a file, or None when the file is missing, unreadable, damaged or not an object."""
    import json

    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):  # ValueError covers UnicodeDecodeError and JSONDecodeError
        return None
    return data if isinstance(data, dict) else None
