"""A per-user cache of the parsed TOML of a configuration file, for the short commands.

``tomllib`` costs `smsgw send` and `smsgw status` a sixth of their start: its import compiles its
regular expressions (about 27 million instructions of 185), and the parse of a real configuration
adds to it. The commands run by scripts read the same file each time, so the first one keeps what
``tomllib.loads`` returned, as JSON with the file's text; the next one that reads the same text
takes the tables from there and does not import ``tomllib``. Everything after the parse (the
validation, the defaults, every error) runs as before: the cache holds only the TOML's tables.

The cache is ``$XDG_CACHE_HOME/smsgw`` (else ``~/.cache/smsgw``), one file per configuration path,
written atomically with mode 0600 (a configuration can hold passwords) in a directory of mode 0700.
A cached file is used only when it is the user's own and no one else may write it, and only when
its text is the configuration's text exactly: an edit, a file at the same path, a collision of two
paths' names, a torn or foreign file are each a miss, and the file is parsed again. A document with
a TOML date or time (no JSON for it) is not cached. Nothing here raises: a cache that cannot be read
or written is a miss.
"""

from __future__ import annotations

import json
import os
import zlib

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: see appliance/frozen.py
if TYPE_CHECKING:
    from typing import Any

#: the cache's format: a file with another version is a miss (and is rewritten)
VERSION = 1


def directory() -> str | None:
    """Where the cache lives for this user (None: no home to keep it in)."""
    base = os.environ.get("XDG_CACHE_HOME") or ""
    if not os.path.isabs(base):  # the XDG base directory specification ignores a relative path
        home = os.path.expanduser("~")
        if not os.path.isabs(home):
            return None
        base = os.path.join(home, ".cache")
    return os.path.join(base, "smsgw")


def _file(config: str) -> str | None:
    where = directory()
    if where is None:
        return None
    name = os.path.abspath(config)
    return os.path.join(where, f"config-{zlib.crc32(name.encode('utf-8', 'surrogateescape')):08x}.json")


def read(config: str, text: str) -> dict[str, Any] | None:
    """The tables cached for ``text``, the content of the configuration file ``config``, or None."""
    path = _file(config)
    if path is None:
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        status = os.fstat(fd)
        if status.st_uid != os.geteuid() or status.st_mode & 0o022:
            return None  # another user's, or writable by others: not trusted
        with os.fdopen(fd, "rb", closefd=False) as handle:
            cached = json.loads(handle.read())
    except (OSError, ValueError):
        return None
    finally:
        os.close(fd)
    if (not isinstance(cached, dict) or cached.get("version") != VERSION or cached.get("path") != os.path.abspath(config)
            or cached.get("text") != text or not isinstance(cached.get("tables"), dict)):
        return None
    tables: dict[str, Any] = cached["tables"]
    return tables


def write(config: str, text: str, tables: dict[str, Any]) -> None:
    """Keep ``tables``, parsed from ``text`` of the configuration file ``config``, for the next read."""
    path = _file(config)
    if path is None:
        return
    try:
        body = json.dumps({"version": VERSION, "path": os.path.abspath(config), "text": text, "tables": tables},
                          ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError):
        return  # a TOML date or time: not cached
    # not drivers.private_files.replace_file: its tempfile imports random and shutil, which `smsgw
    # send` does without, and its fsync is more than a cache that may be lost needs
    temporary = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8", closefd=False) as handle:
                handle.write(body)
        finally:
            os.close(fd)
        os.replace(temporary, path)
    except OSError:
        try:
            os.unlink(temporary)
        except OSError:
            pass
