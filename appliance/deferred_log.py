"""``get_logger(name)``: ``logging.getLogger(name)``, with ``logging`` imported at the first message.

The store, the intake and the liveness checks log only on rare paths (a migration, a repaired row,
a refused request), while ``smsgw send`` and ``smsgw status`` import them on every run; ``logging``
(with ``traceback``, ``threading`` and ``string``) is a tenth of what those commands cost to start.
A module writes ``LOG = get_logger(__name__)`` and uses ``LOG`` as the ``logging.Logger`` it is.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: see appliance/frozen.py
if TYPE_CHECKING:
    import logging
    from typing import Any


class _DeferredLogger:
    """Stands for ``logging.getLogger(name)``: every attribute is the logger's, looked up on first use."""

    __slots__ = ("_name", "_logger")

    def __init__(self, name: str) -> None:
        self._name = name
        self._logger: logging.Logger | None = None

    def __getattr__(self, attribute: str) -> Any:
        if self._logger is None:
            import logging

            self._logger = logging.getLogger(self._name)
        return getattr(self._logger, attribute)

    def __repr__(self) -> str:
        return f"<deferred logger {self._name}>"


def get_logger(name: str) -> logging.Logger:
    """The logger ``name``, without importing ``logging`` until it is used."""
    return _DeferredLogger(name)  # type: ignore[return-value]  # it stands for one
