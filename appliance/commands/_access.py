"""Who may use the config and the store: the operators' group, and what to tell someone outside it.

On an installed appliance the config (``/etc/smsgw/smsgw.toml``, ``root:smsgw 0640``) and the store
directory (``/var/lib/smsgw``, ``smsgw:smsgw 0770``) belong to the ``smsgw`` group; ``install.sh
--operator USER`` adds a user to it. A user outside it gets a message naming the group to join.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_GROUP = "smsgw"


def owning_group(path: Path) -> str:
    """The group of ``path`` or of its nearest parent that can be looked at (``smsgw`` if none)."""
    import grp  # here: only a refusal names the group

    for candidate in (path, *path.parents):
        try:
            gid = candidate.stat().st_gid
        except OSError:
            continue
        if gid == 0:
            return DEFAULT_GROUP  # root's group: the operators' group is the one to join
        try:
            return grp.getgrgid(gid).gr_name
        except KeyError:
            return str(gid)
    return DEFAULT_GROUP


def join_hint(path: Path) -> str:
    import getpass  # here: only a refusal needs the user's name

    group = owning_group(path)
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "USER"
    return f"join the {group} group: sudo usermod -aG {group} {user} (then log in again)"


def denied(path: Path) -> str:
    return f"cannot open {path}: permission denied; {join_hint(path)}"


def blocked_directory(path: Path) -> Path | None:
    """The first parent of ``path`` this process may not enter (then ``path.exists()`` says False)."""
    for parent in reversed(path.parents):
        if parent.is_dir() and not os.access(parent, os.X_OK):
            return parent
    return None


def store_access_problem(path: Path, *, create: bool) -> str | None:
    """Why this process cannot use the store at ``path``, or None."""
    if blocked_directory(path) is not None:
        return denied(path)
    if path.exists():
        if not os.access(path, os.R_OK | os.W_OK):
            return denied(path)
        # SQLite creates -wal and -shm beside the database when they are missing
        for name in (path.name + "-wal", path.name + "-shm"):
            side = path.parent / name
            if side.exists() and not os.access(side, os.R_OK | os.W_OK):
                return denied(side)
        if not (path.parent / (path.name + "-wal")).exists() and not os.access(path.parent, os.W_OK):
            return denied(path.parent)
    elif create and path.parent.is_dir() and not os.access(path.parent, os.W_OK | os.X_OK):
        return denied(path.parent)
    return None
