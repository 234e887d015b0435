"""Schema migrations by PRAGMA user_version, tested from stored SQL dumps of older versions."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from store_helpers import SENT, T0, Clock, Concat, Deliver, connection, request
from waiting import wait_until

from appliance.migrations import (
    SCHEMA_VERSION,
    MigrationFailed,
    SchemaError,
    migrate,
    migrate_in_child,
    user_version,
)
from appliance.store import OutboundRequest, Store

DATABASES = Path(__file__).parent / "databases"
ROOT = Path(__file__).resolve().parent.parent


def load_dump(name: str, path: Path) -> Path:
    conn = sqlite3.connect(path)
    conn.executescript((DATABASES / name).read_text())
    conn.close()
    return path


def columns(conn: sqlite3.Connection) -> dict[str, list[str]]:
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
    return {t: [c[1] for c in conn.execute(f'PRAGMA table_info("{t}")')] for t in tables}


def indexes(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")}


def test_v1_dump_is_really_version_1(tmp_path: Path) -> None:
    path = load_dump("v1_sample.sql", tmp_path / "v1.db")
    conn = sqlite3.connect(path)
    assert user_version(conn) == 1
    assert "partial" not in columns(conn)["inbox"]
    conn.close()


def test_v2_dump_is_really_version_2(tmp_path: Path) -> None:
    path = load_dump("v2_sample.sql", tmp_path / "v2.db")
    conn = sqlite3.connect(path)
    assert user_version(conn) == 2
    assert "slot" not in columns(conn)["inbox_part"] and "inbox_part_pdu" in indexes(conn)
    conn.close()


@pytest.mark.parametrize("version", [1, 2])
def test_old_database_migrates_to_the_same_schema_as_a_new_one(tmp_path: Path, version: int) -> None:
    path = load_dump(f"v{version}_sample.sql", tmp_path / "old.db")
    with Store(path) as migrated, Store(tmp_path / "new.db") as fresh:
        assert migrated.migrated_from == version and fresh.migrated_from == 0
        assert user_version(connection(migrated)) == SCHEMA_VERSION == user_version(connection(fresh))
        assert columns(connection(migrated)) == columns(connection(fresh))
        assert indexes(connection(migrated)) == indexes(connection(fresh))


def test_v1_rows_keep_working_after_the_migration(tmp_path: Path) -> None:
    clock = Clock(T0 + 100)
    path = load_dump("v1_sample.sql", tmp_path / "v1.db")
    with Store(path, clock=clock) as store:
        stats = store.stats()
        assert stats["outbox"]["queued"] == 1 and stats["outbox"]["sending"] == 1
        assert store.inbox(10)[0]["partial"] is False  # the new column defaults for old rows
        assert store.enqueue([request("+491701234567", client_key="k-1", source="alerts")])[0].duplicate
        assert store.opted_out("+491701234571") and store.state_get("optout", "+491701234571") is None  # schema 4
        # the message cut off mid-send in the old version resumes with only its unsent part
        assert store.resume_interrupted() == [2]
        first = store.claim("sim0", lease=60)
        second = store.claim("sim0", lease=60)
        assert first is not None and first.id == 1  # high priority first
        assert second is not None and second.id == 2
        assert [p.sequence for p in second.unsent_parts] == [2]
        # a delivery report for the old sent message still matches (new report index)
        match = store.delivery_report("sim0", 18, "+491701234569", 0)
        assert match is not None and match.message_state == "delivered"
        # the old half of a multipart message completes with its second half
        store.add_incoming_part("sim0", "0d02", Deliver("+491701234566", "second half", SENT, Concat(65, 2, 2)),
                                None, T0 + 200)
        assert [m.text for m in store.received_unhandled()][-1] == "first half second half"


def test_v2_part_still_on_the_sim_is_not_stored_again_after_the_upgrade(tmp_path: Path) -> None:
    # committed by the old version (global key, no slot), not yet deleted from sim1's slot 3
    path = load_dump("v2_sample.sql", tmp_path / "v2.db")
    with Store(path, clock=Clock(T0 + 41 * 86400)) as store:
        deliver = Deliver("+491701234570", "still on the SIM", SENT)
        assert store.add_incoming_part("sim1", "07AC01", deliver, None, store.clock(), 3) == 2
        assert store.add_incoming_part("sim1", "00" + "07AC01", deliver, None, store.clock(), 3) == 2
        # the same SMS on another modem was never stored by the old version: it is a new part now
        assert store.add_incoming_part("sim0", "07AC01", deliver, None, store.clock(), 3) != 2
        # two identical SMS in two new slots are two messages
        new = Deliver("+491701234570", "new twin", SENT)
        assert store.add_incoming_part("sim1", "07AD01", new, None, store.clock(), 4) != \
            store.add_incoming_part("sim1", "07AD01", new, None, store.clock(), 5)


def test_v2_rows_are_pruned_after_the_migration(tmp_path: Path) -> None:
    path = load_dump("v2_sample.sql", tmp_path / "v2.db")
    with Store(path, clock=Clock(T0 + 41 * 86400)) as store:
        totals = store.prune(retention_days=30, audit_retention_days=30)
        assert (totals["messages"], totals["parts"], totals["inbox"], totals["inbox_parts"]) == (1, 1, 1, 1)
        assert totals["audit"] == 1 and totals["events"] >= 1
        assert {m["state"] for m in store.outbox()} == {"sent", "queued"}  # awaiting a report, queued
        assert [m["text"] for m in store.inbox()] == ["still on the SIM"]  # unhandled
        assert store.stats()["events_pending"] == 1  # its received event, not yet published


def test_database_from_a_newer_smsgw_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(SchemaError, match="newer than this smsgw supports"):
        Store(path)


def test_failed_migration_leaves_the_old_version(tmp_path: Path) -> None:
    path = load_dump("v1_sample.sql", tmp_path / "v1.db")
    conn = sqlite3.connect(path)
    conn.execute("ALTER TABLE inbox ADD COLUMN partial INTEGER")  # a clash makes step 2 fail
    conn.commit()
    conn.close()
    with pytest.raises(sqlite3.OperationalError):
        Store(path)
    conn = sqlite3.connect(path)
    assert user_version(conn) == 1
    assert "part_report" not in indexes(conn)
    conn.close()


def queued_at_version(path: Path, version: int) -> sqlite3.Connection:
    """A file at schema ``version`` with message 7 queued (due at T0, valid until T0 + 60)."""
    conn = sqlite3.connect(path)
    migrate(conn, target=version)
    conn.execute("INSERT INTO message (id, recipient, text, priority, created_at, state, source, valid_until, "
                 "next_attempt_at) VALUES (7, '+491701234567', 'şu an', 1, ?, 'queued', 'test', ?, ?)",
                 (T0, T0 + 60, T0))
    conn.commit()
    return conn


def test_v4_queue_gets_the_send_path_indexes_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "v4.db"
    conn = queued_at_version(path, 4)
    assert not {"message_due", "message_expiry"} & indexes(conn)
    conn.close()
    with Store(path, clock=Clock(T0 + 1)) as store:
        assert store.migrated_from == 4 and {"message_held", "message_expiring"} <= indexes(connection(store))
        assert store.next_due_at() == T0
        assert store.expire_due(now=T0 + 61) == [7]


def test_v5_queue_gets_the_language_column_and_its_rows_keep_the_configured_language(tmp_path: Path) -> None:
    path = tmp_path / "v5.db"
    conn = queued_at_version(path, 5)
    assert "language" not in columns(conn)["message"]
    conn.close()
    with Store(path, clock=Clock(T0 + 1)) as store:
        assert store.migrated_from == 5 and "language" in columns(connection(store))["message"]
        store.enqueue([OutboundRequest(to="+491701234568", text="şu an", source="test", language="tr")])
        old, new = store.claim("sim0", lease=60), store.claim("sim0", lease=60)
        assert old is not None and old.id == 7 and old.language is None  # the dispatcher's [sms] language
        assert new is not None and new.language == "tr"


def test_a_version_number_without_a_step_is_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # numbers are assigned to schema changes ahead of their work: 2 has no step (yet), 3 has one
    from appliance import migrations

    steps = {1: lambda db: db.execute("CREATE TABLE one (x)"), 3: lambda db: db.execute("CREATE TABLE three (x)")}
    monkeypatch.setattr(migrations, "MIGRATIONS", steps)
    monkeypatch.setattr(migrations, "SCHEMA_VERSION", 3)
    conn = sqlite3.connect(tmp_path / "gap.db", isolation_level=None)
    assert migrate(conn, target=1) == 0 and user_version(conn) == 1
    assert migrate(conn, target=3) == 1 and user_version(conn) == 3
    assert set(columns(conn)) == {"one", "three"}
    assert migrate(conn, target=3) == 3  # nothing left to run
    conn.close()


def test_a_v9_file_gets_the_alert_table_of_v12(tmp_path: Path) -> None:
    path = tmp_path / "v9.db"
    conn = queued_at_version(path, 9)
    assert "alert" not in columns(conn)
    conn.close()
    with Store(path, clock=Clock(T0 + 1)) as store:
        assert store.migrated_from == 9 and user_version(connection(store)) == SCHEMA_VERSION
        assert "alert" in columns(connection(store))
        assert {"alert_due", "alert_active", "alert_closed"} <= indexes(connection(store))
        assert store.alerts() == [] and store.next_due_at() == T0  # the queued message is still due


def test_a_v12_queue_gets_the_held_column_and_its_due_and_held_rows_are_claimed_in_order(tmp_path: Path) -> None:
    path = tmp_path / "v12.db"
    conn = queued_at_version(path, 12)  # message 7, due at T0
    conn.execute("INSERT INTO message (id, recipient, text, priority, created_at, state, source, next_attempt_at, "
                 "send_at) VALUES (5, '+491701234568', 'tomorrow', 0, ?, 'queued', 'test', ?, ?)",
                 (T0, T0 + 86400, T0 + 86400))  # held a day, high priority, before 7 in the claim order
    conn.commit()
    assert "held" not in columns(conn)["message"]
    conn.close()
    with Store(path, clock=Clock(T0 + 1)) as store:
        assert store.migrated_from == 12 and "held" in columns(connection(store))["message"]
        assert {"message_queued", "message_held"} <= indexes(connection(store))
        first = store.claim("sim0", lease=60)
        assert first is not None and first.id == 7  # the due one; the held one waits
        assert store.claim("sim0", lease=60) is None
        later = store.claim("sim0", lease=60, now=T0 + 86400)
        assert later is not None and later.id == 5


def test_a_v13_file_gets_the_held_indexes_of_v14_and_its_sending_row_is_found_by_them(tmp_path: Path) -> None:
    path = tmp_path / "v13.db"
    conn = queued_at_version(path, 13)  # message 7, queued, valid until T0 + 60
    conn.execute("UPDATE message SET held = 0 WHERE id = 7")
    conn.execute("INSERT INTO message (id, recipient, text, priority, created_at, state, source, valid_until, "
                 "modem, lease_until) VALUES (8, '+491701234568', 'leased', 0, ?, 'sending', 'test', ?, 'sim0', ?)",
                 (T0, T0 + 60, T0 + 30))  # its lease runs out at T0 + 30
    conn.execute("INSERT INTO message (id, recipient, text, priority, created_at, state, source, updated_at) "
                 "VALUES (9, '+491701234569', 'done', 1, ?, 'delivered', 'test', ?)", (T0, T0))
    conn.commit()
    old = indexes(conn)
    conn.close()
    with Store(path, clock=Clock(T0 + 1)) as store:
        new = indexes(connection(store))
        assert store.migrated_from == 13
        assert {"message_queue", "message_due", "message_expiry", "message_finished", "message_ready"} <= old - new
        assert {"message_queued", "message_leased", "message_expiring", "message_done"} <= new
        held = dict(connection(store).execute("SELECT id, held FROM message").fetchall())
        assert held == {7: 0, 8: 2, 9: None}
        assert store.next_due_at() == T0  # the ready one (its next_attempt_at); the lease runs out later
        first = store.claim("sim1", lease=60)
        assert first is not None and first.id == 7
        assert store.next_due_at() == T0 + 30  # the lease of 8
        again = store.claim("sim1", lease=60, now=T0 + 31)  # the lease ran out: 8 is claimed again
        assert again is not None and again.id == 8 and again.attempts == 1
        assert store.expire_due(now=T0 + 61) == []  # both are sending: they are not expired here
        assert sorted(store.resume_interrupted(now=T0 + 62)) == [7, 8]
        assert store.expire_due(now=T0 + 63) == [7, 8]
        assert store.prune(now=T0 + 86400 * 400)["messages"] == 3


# --- the daemon's and the CLI's way: the steps run in a child process --------------------------

#: Opens the store as the daemon does, in an interpreter of its own (the tests' imports do not count),
#: and prints what it migrated from and the sqlite_utils modules it imported.
OPEN_AS_THE_DAEMON = (
    "import json, sys\n"
    "from appliance.store import Store\n"
    "store = Store(sys.argv[1], migrate_in_child=True)\n"
    "print(json.dumps({'from': store.migrated_from, 'stats': store.stats()['outbox'],\n"
    "                  'sqlite_utils': sorted(m for m in sys.modules if m.split('.')[0] == 'sqlite_utils')}))\n"
)


def opened_as_the_daemon(path: Path) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", OPEN_AS_THE_DAEMON, str(path)], capture_output=True, text=True,
                            env=env, cwd=path.parent, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def test_a_new_store_opened_as_the_daemon_does_is_migrated_without_importing_sqlite_utils(tmp_path: Path) -> None:
    opened = opened_as_the_daemon(tmp_path / "new.db")
    assert opened["from"] == 0 and opened["sqlite_utils"] == []
    assert opened["stats"] == {"queued": 0, "sending": 0, "sent": 0, "delivered": 0, "failed": 0, "expired": 0}
    with Store(tmp_path / "new.db") as child, Store(tmp_path / "in_process.db") as here:
        assert child.migrated_from == SCHEMA_VERSION  # nothing left to run
        assert user_version(connection(child)) == SCHEMA_VERSION
        assert columns(connection(child)) == columns(connection(here))
        assert indexes(connection(child)) == indexes(connection(here))
        for pragma in ("auto_vacuum", "journal_mode"):  # set by the parent before the child's first table
            assert connection(child).execute(f"PRAGMA {pragma}").fetchone() == \
                connection(here).execute(f"PRAGMA {pragma}").fetchone()
    assert (tmp_path / "new.db").stat().st_mode & 0o777 == 0o600


def test_an_old_store_opened_as_the_daemon_does_keeps_its_rows(tmp_path: Path) -> None:
    path = load_dump("v1_sample.sql", tmp_path / "v1.db")
    opened = opened_as_the_daemon(path)
    assert opened["from"] == 1 and opened["sqlite_utils"] == []
    with Store(path) as child, Store(load_dump("v1_sample.sql", tmp_path / "in_process.db")) as here:
        assert child.migrated_from == SCHEMA_VERSION and here.migrated_from == 1
        assert opened["stats"] == here.stats()["outbox"] and opened["stats"]["queued"] == 1
        assert columns(connection(child)) == columns(connection(here))
        assert child.outbox(100) == here.outbox(100)


def test_a_store_at_the_current_schema_starts_no_child(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from appliance import migrations

    Store(tmp_path / "current.db").close()
    monkeypatch.setattr(migrations, "_CHILD", "raise SystemExit('no child expected')")
    with Store(tmp_path / "current.db", migrate_in_child=True) as store:
        assert store.migrated_from == SCHEMA_VERSION


def test_a_failed_migration_in_the_child_names_the_file_and_the_error(tmp_path: Path) -> None:
    path = load_dump("v1_sample.sql", tmp_path / "v1.db")
    with sqlite3.connect(path) as conn:
        conn.execute("ALTER TABLE inbox ADD COLUMN partial INTEGER")  # a clash makes step 2 fail
    with pytest.raises(MigrationFailed) as failed:
        Store(path, migrate_in_child=True)
    assert str(failed.value) == (f"migrating the store {path} to schema version {SCHEMA_VERSION} failed: "
                                 "OperationalError: duplicate column name: partial (in the step to schema "
                                 "version 2; the file stays at version 1)")
    with sqlite3.connect(path) as conn:
        assert user_version(conn) == 1 and "part_report" not in indexes(conn)  # step 2 rolled back


def test_a_child_that_dies_is_a_failed_migration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from appliance import migrations

    monkeypatch.setattr(migrations, "_CHILD", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)")
    with pytest.raises(MigrationFailed, match=r"new\.db .*failed: the migration process was killed by signal 9"):
        Store(tmp_path / "new.db", migrate_in_child=True)
    monkeypatch.setattr(migrations, "_CHILD", "import sys; sys.exit(3)")
    with pytest.raises(MigrationFailed, match="failed: the migration process exited with status 3$"):
        Store(tmp_path / "new.db", migrate_in_child=True)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-python"))
    with pytest.raises(MigrationFailed, match=r"failed: cannot start .*no-python: \[Errno 2\]"):
        Store(tmp_path / "new.db", migrate_in_child=True)


def test_a_newer_file_is_refused_without_a_child(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from appliance import migrations

    path = tmp_path / "future.db"
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    monkeypatch.setattr(migrations, "_CHILD", "raise SystemExit('no child expected')")
    with pytest.raises(SchemaError, match="newer than this smsgw supports") as refused:
        Store(path, migrate_in_child=True)
    assert not isinstance(refused.value, MigrationFailed)


def child_ignoring_sigterm(path: Path) -> int | None:
    """The pid of this process's child running with ``path`` in its command line once it ignores
    SIGTERM and SIGINT (/proc/PID/status SigIgn)."""
    for entry in Path("/proc").iterdir():
        try:
            if not entry.name.isdigit() or int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) != os.getpid():
                continue
            if str(path).encode() not in (entry / "cmdline").read_bytes():
                continue
            ignored = int(next(line.split()[1] for line in (entry / "status").read_text().splitlines()
                               if line.startswith("SigIgn:")), 16)
        except (OSError, IndexError, ValueError, StopIteration):
            continue  # gone, or not exec'd yet
        wanted = (1 << (signal.SIGTERM - 1)) | (1 << (signal.SIGINT - 1))
        if ignored & wanted == wanted:
            return int(entry.name)
    return None


def test_a_sigterm_during_the_migration_does_not_cut_it_short(tmp_path: Path) -> None:
    """As in-process: `smsgw run` remembers a SIGTERM during start-up and stops once up, so the child
    (which systemd signals with the daemon) finishes the steps."""
    path = tmp_path / "new.db"
    sqlite3.connect(path, isolation_level=None).execute("PRAGMA journal_mode=WAL").connection.close()
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # the child waits for the write lock
    outcome: list[object] = []

    def migrate_there() -> None:
        try:
            outcome.append(migrate_in_child(path, busy_timeout=30.0))
        except Exception as exc:  # noqa: BLE001 - asserted below
            outcome.append(exc)

    thread = threading.Thread(target=migrate_there)
    thread.start()
    child = wait_until(lambda: child_ignoring_sigterm(path), timeout=30, what="the migration child")
    os.kill(child, signal.SIGTERM)
    os.kill(child, signal.SIGINT)
    blocker.execute("ROLLBACK")
    blocker.close()
    thread.join(timeout=60)
    assert outcome == [0]
    with sqlite3.connect(path) as conn:
        assert user_version(conn) == SCHEMA_VERSION


def smsgw(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "SMSGW_CONFIG"}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-m", "appliance", *args], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=60, check=False)


@pytest.mark.parametrize("command", [["run"], ["send", "+491701234567", "hi"]])
def test_run_and_send_report_a_failed_migration_with_the_store_file(tmp_path: Path, command: list[str]) -> None:
    path = load_dump("v1_sample.sql", tmp_path / "smsgw.db")
    with sqlite3.connect(path) as conn:
        conn.execute("ALTER TABLE inbox ADD COLUMN partial INTEGER")
    config = tmp_path / "smsgw.toml"
    config.write_text('[store]\npath = "smsgw.db"\n[[modems]]\nid = "sim0"\nport = "/dev/null-modem"\n')
    result = smsgw(command[0], "--config", str(config), *command[1:])
    assert result.returncode == 1, result.stderr
    assert f"migrating the store {path} to schema version {SCHEMA_VERSION} failed: " \
        "OperationalError: duplicate column name: partial (in the step to schema version 2; the file stays at " \
        "version 1)" in result.stderr
    with sqlite3.connect(path) as conn:
        assert user_version(conn) == 1
