"""argparse types shared by the sub-commands: numbers with a lower bound and a clear message."""

from __future__ import annotations

import argparse
from collections.abc import Callable

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: see appliance/frozen.py
if TYPE_CHECKING:
    from typing import TypeVar

    N = TypeVar("N", int, float)


def at_least(cast: Callable[[str], N], minimum: N, what: str = "value") -> Callable[[str], N]:
    """An argparse ``type`` that parses with ``cast`` and refuses values below ``minimum``."""
    kind = "whole number" if cast is int else "number"

    def parse(text: str) -> N:
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be a {kind}, not {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{what} must be at least {minimum}, not {value}")
        return value

    parse.__name__ = f"{what} ({kind})"  # argparse names the type in its own messages
    return parse


positive_int = at_least(int, 1, "N")
