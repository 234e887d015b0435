"""Fixtures for store and dispatcher tests (load with ``pytest_plugins = ["store_fixtures"]``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from store_helpers import Clock

from appliance.store import Store


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "smsgw.db"


@pytest.fixture
def store(db_path: Path, clock: Clock) -> Iterator[Store]:
    s = Store(db_path, clock=clock)
    try:
        yield s
    finally:
        s.close()
