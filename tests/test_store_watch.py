"""Commits by other processes wake the daemon through an inotify watch, not a poll (appliance/store_watch.py)."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from daemon_helpers import DaemonProcess, write_config
from store_helpers import request
from waiting import async_wait_until

from appliance.store import OutboundRequest, Store
from appliance.store_watch import follow, open_watch
from drivers.simulator import Simulator

pytest_plugins = ["daemon_helpers"]
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux's")

OUTSIDE = "+4915112345678"


def test_a_commit_by_another_connection_makes_the_watch_readable_a_read_does_not(tmp_path: Path) -> None:
    db = tmp_path / "smsgw.db"
    with Store(db) as daemon_store:
        watch = open_watch(daemon_store.path)
        assert watch is not None
        try:
            watch.read()  # whatever opening the store wrote
            (tmp_path / "other.txt").write_text("a file next to the store is not the store")
            reader = Store(db, read_only=True)  # smsgw status
            reader.stats()
            assert watch.read() is False  # reading raises no event ...
            reader.close()
            assert watch.read() is True  # ... its close does (SQLite opened the -wal for writing): one look
            writer = Store(db)  # smsgw send
            watch.read()  # what opening it wrote
            writer.enqueue([request(OUTSIDE, "from another process")])
            assert watch.read() is True  # the commit's frames (possibly before it is visible) ...
            writer.close()
            assert watch.read() is True  # ... and the close, after it is: IN_CLOSE_WRITE
            assert watch.read() is False  # drained
        finally:
            watch.close()


def test_a_store_opened_through_a_symlink_is_watched_where_its_wal_is(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "etc").mkdir()
    link = tmp_path / "etc" / "smsgw.db"
    link.symlink_to(tmp_path / "data" / "store.db")
    with Store(link) as daemon_store:
        watch = open_watch(daemon_store.path)
        assert watch is not None
        try:
            watch.read()
            with Store(link) as writer:
                writer.enqueue([request(OUTSIDE, "through the link")])
            assert (tmp_path / "data" / "store.db-wal").exists()
            assert watch.read() is True
        finally:
            watch.close()


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[Simulator]:
    async with Simulator(tmp_path / "sim", modems=1, profile="generic") as simulator:
        yield simulator


async def test_smsgw_send_is_sent_at_once_with_no_poll_left_to_notice_it(tmp_path: Path, sim: Simulator,
                                                                        daemons: list[DaemonProcess]) -> None:
    config = write_config(tmp_path / "gw", sim.ports)
    # neither the store poll nor the dispatcher's safety net fires within the test
    config.write_text(config.read_text().replace("watch_interval = 0.05", "watch_interval = 3600")
                      .replace("poll_interval = 0.2", "poll_interval = 3600"))
    db = tmp_path / "gw" / "smsgw.db"
    Store(db).close()  # the schema exists before two processes open the file

    def online() -> bool:
        with Store(db, read_only=True) as store:
            return bool((store.state_get("modem", "sim0") or {}).get("state") == "online")

    daemon = await DaemonProcess(config).start()
    daemons.append(daemon)
    await async_wait_until(online, timeout=20, what="the modem online")
    with Store(db) as store:
        store.enqueue([OutboundRequest(to=OUTSIDE, text="noticed without polling", source="test")])
    await async_wait_until(lambda: [r["text"] for r in sim.network.sent] == ["noticed without polling"],
                           timeout=20, what="the SMS at the network")
    # after the daemon's own commits (the send): the watch is looked at again, so the next one is seen too
    with Store(db) as store:
        store.enqueue([OutboundRequest(to=OUTSIDE, text="and the next", source="test")])
    await async_wait_until(lambda: [r["text"] for r in sim.network.sent] == ["noticed without polling", "and the next"],
                           timeout=20, what="the second SMS at the network")


class Looks:
    """The daemon's look (``PRAGMA data_version`` of its own connection), counted; ``blind`` looks
    find nothing, as a look does that comes with the commit's frames, before the committer's fsync
    made the commit visible (SQLite's src/wal.c, sqlite3WalFrames: the frames are written and, with
    synchronous=FULL, synced before walIndexWriteHdr publishes the commit in the -shm)."""

    def __init__(self, store: Store, blind: int = 0) -> None:
        self.store = store
        self.version = store.data_version()
        self.blind = blind
        self.count = 0
        self.found = 0

    def __call__(self) -> bool:
        self.count += 1
        if self.blind:
            self.blind -= 1
            return False
        version = self.store.data_version()
        if version == self.version:
            return False
        self.version = version
        self.found += 1
        return True


async def test_a_look_too_early_is_made_again_within_milliseconds_not_at_the_end_of_the_window(
        tmp_path: Path) -> None:
    db = tmp_path / "smsgw.db"
    with Store(db) as daemon_store:
        watch = open_watch(daemon_store.path)
        assert watch is not None
        watch.read()
        looks = Looks(daemon_store, blind=2)
        following = asyncio.create_task(follow(watch, looks, coalesce=60.0))
        try:
            await async_wait_until(lambda: looks.count == 1, timeout=5, what="the look at the start")
            looks.blind = 2  # the first two looks after the event come too early
            with Store(db) as writer:  # smsgw send
                writer.enqueue([request(OUTSIDE, "from another process")])
            # found by a look again within 1 + 2 ms, not 60 s later at the window's end
            await async_wait_until(lambda: looks.found == 1, timeout=10, what="the commit found")
            assert looks.count == 4
        finally:
            following.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await following
        watch.close()


async def test_own_commits_cost_a_few_looks_per_window_however_many_there_are(tmp_path: Path) -> None:
    db = tmp_path / "smsgw.db"
    with Store(db) as daemon_store:
        watch = open_watch(daemon_store.path)
        assert watch is not None
        watch.read()
        looks = Looks(daemon_store)
        following = asyncio.create_task(follow(watch, looks, coalesce=0.5))
        try:
            await async_wait_until(lambda: looks.count == 1, timeout=5, what="the look at the start")
            for n in range(200):  # the daemon's own commits: each writes the WAL, none changes data_version
                daemon_store.enqueue([request(OUTSIDE, f"own {n}")])
                await asyncio.sleep(0)
            await async_wait_until(lambda: looks.count >= 2, timeout=5, what="the look after the first event")
            windows = 1 + 1  # the one the commits opened, and at most one opened by events left in the descriptor
            assert looks.found == 0
            assert looks.count <= 1 + windows * 12  # each window: at once, 1, 2, 4, 8, ... 256 ms, the end
        finally:
            following.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await following
        watch.close()
