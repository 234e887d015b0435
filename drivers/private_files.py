"""Files that hold the appliance's data (the store, its -wal/-shm, lock files, the PIN rejection
file) are private to the service whatever the process's umask.

The mode is ``0600`` (owner only). When the file's directory has the set-group-ID bit, its files
inherit the directory's group, which is then a service group chosen by the administrator (for
example ``install -d -m 2750 -g smsgw /var/lib/smsgw``): its members may read, so the mode is
``0640``. When the directory is group-writable (``/var/lib/smsgw`` 0770 for the daemon and its
operators, as deploy/raspberrypi/install.sh makes it), the group shares the files read-write:
``0660``. Nothing is ever readable by others. Under systemd the unit's ``UMask=0027`` alone would
already give ``0640``; these rules make ``smsgw send`` from a shell with umask ``022`` or a daemon
started by hand just as safe.

Files that are rewritten whole (the configuration, which may hold the PIN, the broker password and
the API token hashes) are replaced atomically by :func:`replace_file`: written beside the file with
their mode from the start, fsynced, checked, then renamed into place, so a reader sees the old file
or the new one and never a part, and a refused text never replaces anything.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

#: The mode of a data file in an ordinary directory.
PRIVATE_MODE = 0o600
#: The mode of a data file in a set-group-ID directory (a service group may read).
GROUP_MODE = 0o640
#: The mode of a data file in a group-writable directory (the daemon and its operators).
SHARED_MODE = 0o660


def data_file_mode(directory: os.PathLike[str] | str) -> int:
    """The mode for a data file created in ``directory``."""
    try:
        mode = os.stat(directory).st_mode
    except OSError:
        return PRIVATE_MODE
    if mode & stat.S_IWGRP:
        return SHARED_MODE
    return GROUP_MODE if mode & stat.S_ISGID else PRIVATE_MODE


def open_private(path: os.PathLike[str] | str, flags: int = os.O_RDWR) -> int:
    """Open (creating if needed) a data file with :func:`data_file_mode`; the fd.

    A file this call creates gets exactly that mode (``fchmod``: the umask cannot widen or narrow
    it); an existing file loses any permission the policy does not allow (see :func:`restrict`).
    """
    mode = data_file_mode(Path(path).parent)
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    except FileExistsError:
        fd = os.open(path, flags | os.O_CLOEXEC)
        restrict_fd(fd, mode)
        return fd
    os.fchmod(fd, mode)
    return fd


def create_private(path: os.PathLike[str] | str) -> None:
    """Make sure ``path`` exists with the data file mode (for files another library opens, such as
    the SQLite database, whose -wal and -shm then get the same mode from SQLite).

    An existing file is never opened here, only ``chmod``-ed by name: closing any descriptor of a
    file drops every POSIX lock the process holds on it, which would break the locking of an SQLite
    connection this process already has on that file.
    """
    mode = data_file_mode(Path(path).parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    except FileExistsError:
        restrict(path)
        return
    try:
        os.fchmod(fd, mode)
    finally:
        os.close(fd)  # a new file: no connection of this process has locks on it yet


def _narrowed(st: os.stat_result, mode: int) -> int | None:
    """The permission bits without those ``mode`` does not allow; None if nothing changes or the file
    is not ours to change."""
    allowed = st.st_mode & 0o7777 & (mode | 0o7000)
    if allowed != st.st_mode & 0o7777 and os.geteuid() in (0, st.st_uid):
        return allowed
    return None


def restrict_fd(fd: int, mode: int) -> None:
    """Drop the permission bits of an open file that ``mode`` does not allow (only if we own it)."""
    narrowed = _narrowed(os.fstat(fd), mode)
    if narrowed is not None:
        os.fchmod(fd, narrowed)


def restrict(path: os.PathLike[str] | str) -> None:
    """:func:`restrict_fd` by name, if ``path`` exists (without opening it: see :func:`create_private`)."""
    try:
        narrowed = _narrowed(os.stat(path), data_file_mode(Path(path).parent))
        if narrowed is not None:
            os.chmod(path, narrowed)
    except FileNotFoundError:
        return


def replace_file(path: Path, text: str, *, mode: int | None = None,
                 check: Callable[[Path], None] | None = None) -> None:
    """Replace ``path`` with ``text`` (UTF-8) atomically: a temporary file beside it, with ``mode``
    from the start, is written and fsynced, ``check(temporary_path)`` may refuse it by raising (the
    exception propagates and ``path`` is untouched), then it is renamed over ``path``.

    ``mode=None`` keeps the mode of the file being replaced and, as root, its owner and group (so
    root editing the service's file leaves it the service's). The temporary file never outlives the
    call.
    """
    import tempfile  # only here: it imports random, which `smsgw send` and `status` do without

    owner: tuple[int, int] | None = None
    if mode is None:
        info = path.stat()
        mode = info.st_mode & 0o7777
        if os.geteuid() == 0:
            owner = (info.st_uid, info.st_gid)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            os.fchmod(fh.fileno(), mode)
            if owner is not None:
                os.fchown(fh.fileno(), *owner)
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        if check is not None:
            check(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
