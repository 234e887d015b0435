"""Webhook deliveries: a real aiohttp receiver on loopback, a real store file, the daemon's component.

The component (``appliance.webhooks.Webhooks``) runs in the test's event loop against the store the
test writes events to (a received SMS, an outbound message's state changes), exactly as the daemon
commits them. The signature is checked here with ``hmac`` independently of the code under test.
The end-to-end tests (daemon process, simulator, mosquitto, SIGKILL) are in test_webhooks_e2e.py.
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import sqlite3
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from config_errors import config_file, load_error
from daemon_helpers import ROOT, daemon_env
from mosquitto import Certs
from store_helpers import SENT, Deliver, connection, request, submit_parts
from waiting import async_wait_until

from appliance.commands import status as status_command
from appliance.config import WebhookConfig, load_config, parse_config
from appliance.store import Store
from appliance.webhooks import Webhooks, backoff, signature

pytest_plugins = ["mosquitto", "webhook_receiver"]  # tls_certs, receivers

SECRET = "0123456789abcdef-webhook-secret"
DOCS = Path(__file__).resolve().parent.parent / "docs" / "webhooks.md"


class OffsetClock:
    """The wall clock plus an offset the test moves (an hour passes in an instant)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@pytest.fixture
def clock() -> OffsetClock:
    return OffsetClock()


@pytest.fixture
def store(tmp_path: Path, clock: OffsetClock) -> Iterator[Store]:
    with Store(tmp_path / "smsgw.db", clock=clock) as s:
        yield s


@pytest.fixture
async def components() -> AsyncIterator[list[Webhooks]]:
    started: list[Webhooks] = []
    yield started
    for component in started:
        await component.stop()


def hook(url: str, name: str = "erp", **kw: Any) -> WebhookConfig:
    kw.setdefault("retry_base", 0.05)
    kw.setdefault("retry_max", 0.2)
    kw.setdefault("timeout", 2.0)
    return WebhookConfig(name=name, url=url, secret=kw.pop("secret", SECRET), **kw)


async def start(components: list[Webhooks], store: Store, *hooks: WebhookConfig, clock: OffsetClock) -> Webhooks:
    component = Webhooks(hooks, store, clock=clock, poll_interval=0.2)
    await component.start()
    components.append(component)
    return component


def receive(store: Store, n: int, text: str | None = None) -> int:
    """Commit one received SMS as the inbound side does; the inbox id."""
    deliver = Deliver(f"+49170{n:07d}", text or f"received {n}", SENT)
    store.add_incoming_part("sim0", f"07{n:08X}", deliver, None, store.clock(), n)  # type: ignore[arg-type]
    return int(store.inbox(1)[0]["id"])


def rows(store: Store, webhook: str | None = None) -> list[dict[str, Any]]:
    return list(reversed(store.deliveries(webhook, 10_000)))


# --- the format ---------------------------------------------------------------------------------


async def test_received_sms_is_posted_as_json_signed_with_the_secret(store: Store, receivers: Any,
                                                                     components: list[Webhooks],
                                                                     clock: OffsetClock) -> None:
    receiver = await receivers()
    await start(components, store, hook(receiver.url), clock=clock)
    inbox_id = receive(store, 1, "Grüße 🚰 PUMP 7 ON")
    await async_wait_until(lambda: receiver.requests, what="the POST")
    (post,) = receiver.requests
    assert post.path == "/hook" and post.event == "received"
    assert post.headers["Content-Type"] == "application/json"
    # the body is the document MQTT publishes on B/received
    (event,) = [e for e in store.events_pending() if e.topic == "received"]
    assert post.json == event.payload
    assert post.json["id"] == inbox_id and post.json["text"] == "Grüße 🚰 PUMP 7 ON"
    assert post.json["from"] == "+491700000001"
    # verifiable with the secret alone (hmac computed by the test), and not with another one
    assert post.signed_with(SECRET)
    assert not post.signed_with(SECRET + "x")
    assert post.headers["X-Smsgw-Signature"] == signature(SECRET, post.body)
    (row,) = rows(store)
    assert post.delivery == row["delivery_id"] and len(post.delivery) == 36
    await async_wait_until(lambda: rows(store)[0]["state"] == "delivered", what="delivered")
    assert rows(store)[0]["last_status"] == 200 and rows(store)[0]["attempts"] == 1


async def test_the_verification_snippet_of_the_docs_accepts_a_real_delivery(
        store: Store, receivers: Any, components: list[Webhooks], clock: OffsetClock) -> None:
    block = re.search(r"## Verifying the signature.*?```python\n(.*?)```", DOCS.read_text(), re.S)
    assert block is not None, "docs/webhooks.md has no verification snippet"
    namespace: dict[str, Any] = {}
    exec(compile(block.group(1), str(DOCS), "exec"), namespace)  # noqa: S102 - our own documentation
    verify = namespace["verify"]
    receiver = await receivers()
    await start(components, store, hook(receiver.url), clock=clock)
    receive(store, 5, "verify me")
    await async_wait_until(lambda: receiver.requests, what="the POST")
    (post,) = receiver.requests
    assert verify(SECRET, post.body, post.headers["X-Smsgw-Signature"])
    assert not verify("another-secret-of-16+", post.body, post.headers["X-Smsgw-Signature"])
    assert not verify(SECRET, post.body.replace(b"verify me", b"verify m3"), post.headers["X-Smsgw-Signature"])


async def test_https_receiver_with_a_private_ca_and_basic_auth_from_the_url(
        store: Store, receivers: Any, components: list[Webhooks], clock: OffsetClock, tls_certs: Certs) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls_certs.server_cert, tls_certs.server_key)
    receiver = await receivers(ssl_context=context)
    url = receiver.url.replace("https://", "https://erp:s3cret@")
    await start(components, store, hook(url, ca=tls_certs.ca), hook(receiver.url, "no-ca"), clock=clock)
    receive(store, 6)
    await async_wait_until(lambda: rows(store, "erp")[0]["state"] == "delivered", what="delivered over https")
    (post,) = receiver.requests
    assert post.headers["Authorization"] == "Basic " + base64.b64encode(b"erp:s3cret").decode()
    assert post.signed_with(SECRET)
    # without the CA the certificate is not trusted: the delivery waits, nothing is sent in clear
    await async_wait_until(lambda: rows(store, "no-ca")[0]["attempts"] >= 1, what="a refused handshake")
    assert "certificate" in rows(store, "no-ca")[0]["last_error"].lower()
    assert rows(store, "no-ca")[0]["state"] == "pending" and len(receiver.requests) == 1


async def test_message_state_changes_are_posted_in_order(store: Store, receivers: Any,
                                                         components: list[Webhooks], clock: OffsetClock) -> None:
    receiver = await receivers()
    await start(components, store, hook(receiver.url), clock=clock)
    (queued,) = store.enqueue([request("+491701234567", "two states and more")])
    claimed = store.claim("sim0", lease=60)
    assert claimed is not None and claimed.id == queued.id
    store.set_parts(queued.id, submit_parts(2))  # type: ignore[arg-type]
    store.part_sent(queued.id, 1, "sim0", 41)
    store.part_sent(queued.id, 2, "sim0", 42)
    await async_wait_until(lambda: len(receiver.requests) == 3, what="three state changes")
    assert [r.event for r in receiver.requests] == ["message"] * 3
    assert [r.json["state"] for r in receiver.requests] == ["queued", "sending", "sent"]
    assert {r.json["id"] for r in receiver.requests} == {queued.id}
    assert len({r.delivery for r in receiver.requests}) == 3  # one delivery per event
    # the same documents as the MQTT events of B/message/<id>
    events = [e.payload for e in store.events_pending() if e.topic == f"message/{queued.id}"]
    assert [r.json for r in receiver.requests] == events


async def test_a_webhook_gets_only_the_events_it_takes(store: Store, receivers: Any, components: list[Webhooks],
                                                       clock: OffsetClock) -> None:
    inbound, outbound = await receivers(), await receivers()
    await start(components, store, hook(inbound.url, "in", events=("received",)),
                hook(outbound.url, "out", events=("message",)), clock=clock)
    store.enqueue([request()])
    receive(store, 2)
    await async_wait_until(lambda: inbound.requests and outbound.requests, what="both POSTs")
    assert [r.event for r in inbound.requests] == ["received"]
    assert [r.event for r in outbound.requests] == ["message"]
    assert {row["webhook"]: row["event"] for row in rows(store)} == {"in": "received", "out": "message"}


def test_no_webhook_no_delivery_rows(store: Store) -> None:
    store.enqueue([request()])
    receive(store, 3)
    assert rows(store) == []


def test_deliveries_are_written_by_every_process_that_commits_events(tmp_path: Path, store: Store) -> None:
    """``smsgw send`` (another Store on the file) writes the deliveries of the webhooks the daemon
    recorded, in the transaction of its event."""
    store.configure_webhooks([("erp", ("message",), 3600.0)])
    with Store(store.path) as other:
        (result,) = other.enqueue([request()])
    (row,) = rows(store)
    assert row["webhook"] == "erp" and row["event"] == "message" and row["state"] == "pending"
    assert json.loads(row["body"])["id"] == result.id
    assert row["expires_at"] == pytest.approx(row["created_at"] + 3600.0)


def event_rows(store: Store) -> int:
    return int(connection(store).execute("SELECT COUNT(*) FROM event").fetchone()[0])


def test_a_daemon_without_mqtt_writes_no_event_rows_but_every_delivery(store: Store) -> None:
    """``events_published = False`` (the daemon without ``[mqtt]``): a message's way from queued to
    sent and a received SMS write no event row (nothing would publish it), and the webhooks that
    take them still get every delivery, with the payload the event would have had."""
    store.events_published = False
    store.configure_webhooks([("erp", ("message", "received"), 3600.0)])
    (result,) = store.enqueue([request()])
    claimed = store.claim("sim0", lease=60, encode=lambda _m: submit_parts(1))
    assert claimed is not None and claimed.id == result.id
    store.part_sent(claimed.id, 1, "sim0", 42, durable=False)
    receive(store, 5)
    assert event_rows(store) == 0
    assert [(row["event"], json.loads(row["body"]).get("state")) for row in rows(store)] == [
        ("message", "queued"), ("message", "sending"), ("message", "sent"), ("received", None)]
    store.configure_webhooks([("erp", ("received",), 3600.0)])  # a restart with "message" no longer taken
    (second,) = store.enqueue([request(text="again")])
    assert [row["event"] for row in rows(store)][-1] == "received" and event_rows(store) == 0
    store.events_published = True  # with [mqtt]: the events are written again
    store.fail(second.id, "refused")
    assert event_rows(store) == 1


def test_a_delivery_that_cannot_be_written_takes_its_event_with_it(store: Store) -> None:
    """One transaction: when the delivery row fails, the received SMS is not committed either (the
    inbound side then leaves it on the SIM and reads it again), and the message is not queued."""
    store.configure_webhooks([("erp", ("received", "message"), 86400.0)])
    connection(store).execute("CREATE TEMP TRIGGER refuse BEFORE INSERT ON webhook_delivery "
                       "BEGIN SELECT RAISE(ABORT, 'refused for the test'); END")
    with pytest.raises(sqlite3.IntegrityError, match="refused for the test"):
        receive(store, 7)
    with pytest.raises(sqlite3.IntegrityError, match="refused for the test"):
        store.enqueue([request()])
    assert store.inbox(10) == [] and store.pending_parts() == [] and store.outbox(10) == []
    assert store.events_pending() == [] and rows(store) == []
    connection(store).execute("DROP TRIGGER temp.refuse")
    receive(store, 7)  # read again from the SIM: now it is committed with its delivery
    assert len(store.inbox(10)) == 1 and [row["event"] for row in rows(store)] == ["received"]


# --- retries, outage, expiry ----------------------------------------------------------------


async def test_delivery_id_is_the_same_on_every_retry(store: Store, receivers: Any, components: list[Webhooks],
                                                      clock: OffsetClock) -> None:
    receiver = await receivers(status=503)
    await start(components, store, hook(receiver.url), clock=clock)
    receive(store, 4)
    await async_wait_until(lambda: len(receiver.requests) >= 3, what="three refused attempts")
    (row,) = rows(store)
    assert row["state"] == "pending" and row["last_status"] == 503
    assert row["last_error"].startswith("HTTP 503") and "receiver refuses" in row["last_error"]
    receiver.status = 200
    await async_wait_until(lambda: rows(store)[0]["state"] == "delivered", what="delivered after the retries")
    ids = {r.delivery for r in receiver.requests}
    assert ids == {row["delivery_id"]}
    assert {r.body for r in receiver.requests} == {receiver.requests[0].body}  # the same bytes, the same signature
    assert all(r.signed_with(SECRET) for r in receiver.requests)
    assert rows(store)[0]["attempts"] == len(receiver.requests)
    assert [r.answered for r in receiver.requests][-1] == 200


def test_backoff_doubles_up_to_the_maximum() -> None:
    assert [backoff(n, 1.0, 10.0) for n in range(1, 7)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


async def test_an_hour_long_outage_loses_nothing_and_keeps_the_order(store: Store, receivers: Any,
                                                                     components: list[Webhooks],
                                                                     clock: OffsetClock) -> None:
    receiver = await receivers(start=False)  # down: connections refused
    await start(components, store, hook(receiver.url), clock=clock)
    inbox = [receive(store, n) for n in range(10, 30)]
    await async_wait_until(lambda: rows(store)[0]["attempts"] >= 2, what="failed attempts")
    assert "Connect" in rows(store)[0]["last_error"]  # refused: aiohttp's ClientConnectorError
    assert all(row["attempts"] == 0 for row in rows(store)[1:])  # in order: the others wait their turn
    clock.offset += 3600.0  # an hour later the receiver comes back
    await receiver.start()
    await async_wait_until(lambda: len(receiver.requests) == len(inbox), timeout=20, what="the backlog")
    assert [r.json["id"] for r in receiver.requests] == inbox  # every one, once, in order
    assert len({r.delivery for r in receiver.requests}) == len(inbox)
    await async_wait_until(lambda: {row["state"] for row in rows(store)} == {"delivered"}, what="all delivered")


async def test_receiver_down_then_up_while_events_keep_coming(store: Store, receivers: Any,
                                                              components: list[Webhooks],
                                                              clock: OffsetClock) -> None:
    receiver = await receivers()
    await start(components, store, hook(receiver.url), clock=clock)
    committed = [receive(store, n) for n in range(40, 45)]
    await async_wait_until(lambda: len(receiver.requests) == 5, what="the first five")
    await receiver.stop()
    committed += [receive(store, n) for n in range(45, 55)]
    await async_wait_until(lambda: any(row["attempts"] and row["state"] == "pending" for row in rows(store)),
                           what="an attempt against the stopped receiver")
    await receiver.start()
    committed += [receive(store, n) for n in range(55, 60)]
    await async_wait_until(lambda: len({r.json["id"] for r in receiver.requests}) == len(committed),
                           timeout=20, what="everything")
    seen: list[int] = []
    for r in receiver.requests:  # in order; a repeat only of the last one (its answer cut off by the stop)
        if not seen or seen[-1] != r.json["id"]:
            seen.append(r.json["id"])
    assert seen == committed


async def test_deliveries_expire_after_their_time_and_the_next_ones_go(store: Store, receivers: Any,
                                                                       components: list[Webhooks],
                                                                       clock: OffsetClock) -> None:
    receiver = await receivers(start=False)
    await start(components, store, hook(receiver.url, expire_after=1800.0), clock=clock)
    lost = [receive(store, n) for n in (60, 61)]
    await async_wait_until(lambda: rows(store)[0]["attempts"] >= 1, what="a failed attempt")
    clock.offset += 1801.0
    await async_wait_until(lambda: {row["state"] for row in rows(store)} == {"expired"}, what="expiry")
    (audit,) = store.audit_log(kind="webhook.expired")
    assert audit["detail"] == {"webhook": "erp", "expired": 2}
    await receiver.start()
    kept = receive(store, 62)
    await async_wait_until(lambda: receiver.requests, what="the next delivery")
    assert [r.json["id"] for r in receiver.requests] == [kept]
    assert not {r.json["id"] for r in receiver.requests} & set(lost)
    stats = store.webhook_stats()["erp"]
    assert (stats["expired"], stats["pending"]) == (2, 0)


async def test_one_failing_receiver_does_not_block_another(store: Store, receivers: Any,
                                                           components: list[Webhooks], clock: OffsetClock) -> None:
    broken, down, working = await receivers(status=500), await receivers(start=False), await receivers()
    await start(components, store, hook(broken.url, "broken"), hook(down.url, "down"),
                hook(working.url, "working"), clock=clock)
    committed = [receive(store, n) for n in range(70, 80)]
    await async_wait_until(lambda: len(working.requests) == 10, what="the working receiver's deliveries")
    assert [r.json["id"] for r in working.requests] == committed
    assert broken.requests and {r.json["id"] for r in broken.requests} == {committed[0]}  # stuck on its first
    stats = store.webhook_stats()
    assert stats["working"]["delivered"] == 10 and stats["working"]["pending"] == 0
    assert stats["broken"]["pending"] == 10 and stats["down"]["pending"] == 10
    assert stats["broken"]["last_status"] == 500 and stats["down"]["last_status"] is None


async def test_a_slow_receiver_times_out_and_is_retried(store: Store, receivers: Any, components: list[Webhooks],
                                                        clock: OffsetClock) -> None:
    receiver = await receivers()
    receiver.hold()  # takes the request and never answers
    await start(components, store, hook(receiver.url, timeout=0.3), clock=clock)
    receive(store, 90)
    await async_wait_until(lambda: rows(store)[0]["attempts"] >= 1, what="a timed-out attempt")
    assert rows(store)[0]["last_error"] == "no answer within 0.3 s"
    receiver.release()
    await async_wait_until(lambda: rows(store)[0]["state"] == "delivered", what="delivered on a retry")
    assert len({r.delivery for r in receiver.arrived}) == 1 and len(receiver.arrived) >= 2


async def test_a_redirect_is_not_followed_and_counts_as_a_failure(store: Store, receivers: Any,
                                                                  components: list[Webhooks],
                                                                  clock: OffsetClock) -> None:
    receiver = await receivers(status=307)
    await start(components, store, hook(receiver.url), clock=clock)
    receive(store, 91)
    await async_wait_until(lambda: rows(store)[0]["attempts"] >= 1, what="an attempt")
    assert rows(store)[0]["state"] == "pending" and rows(store)[0]["last_status"] == 307


# --- configuration and store ---------------------------------------------------------------------


def test_a_removed_webhook_expires_its_backlog(store: Store) -> None:
    store.configure_webhooks([("old", ("received",), 86400.0), ("kept", ("received",), 86400.0)])
    receive(store, 100)
    assert store.configure_webhooks([("kept", ("received",), 86400.0)]) == {"old": 1}
    by_hook = {row["webhook"]: row for row in rows(store)}
    assert by_hook["old"]["state"] == "expired" and by_hook["old"]["last_error"] == "the webhook is no longer configured"
    assert by_hook["kept"]["state"] == "pending"
    assert store.audit_log(kind="webhook.removed")[0]["detail"] == {"webhook": "old", "expired": 1}
    receive(store, 101)
    assert [row["webhook"] for row in rows(store)].count("old") == 1


def test_recording_the_same_webhooks_again_writes_nothing(store: Store) -> None:
    hooks = [("erp", ("received", "message"), 86400.0)]
    store.configure_webhooks(hooks)
    changes = connection(store).total_changes
    assert store.configure_webhooks(hooks) == {}
    assert connection(store).total_changes == changes  # no transaction: a restart costs no fsync
    store.configure_webhooks([("erp", ("received",), 86400.0)])
    assert connection(store).total_changes > changes


def test_a_daemon_without_webhooks_does_not_import_aiohttp(tmp_path: Path) -> None:
    script = (
        "import asyncio, sys\n"
        "from appliance.store import Store\n"
        "from appliance.webhooks import Webhooks\n"
        f"store = Store({str(tmp_path / 'smsgw.db')!r})\n"
        "asyncio.run(Webhooks((), store).start())\n"
        "print('aiohttp' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=daemon_env(),
                            cwd=ROOT, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_delivered_rows_are_pruned_after_the_retention_pending_ones_kept(store: Store, clock: OffsetClock) -> None:
    store.configure_webhooks([("erp", ("received",), 100 * 86400.0)])
    receive(store, 110)
    receive(store, 111)
    first, second = rows(store)
    store.delivery_done(first["id"], 200)
    clock.offset += 31 * 86400.0
    totals = store.prune(retention_days=30)
    assert totals["webhook_deliveries"] == 1
    assert [row["id"] for row in rows(store)] == [second["id"]]


def test_the_delivery_path_reads_no_whole_table(store: Store, clock: OffsetClock) -> None:
    """Every statement a sender and ``smsgw status`` run uses an index of webhook_delivery (a scan of
    the partial indexes reads only the pending, or only the finished, rows): the cost does not
    grow with the history of other webhooks."""
    store.configure_webhooks([("a", ("received", "message"), 86400.0), ("b", ("received",), 86400.0)])
    for n in range(30):
        receive(store, 200 + n)
    for row in rows(store)[:20]:
        store.delivery_done(row["id"], 200)
    statements: list[str] = []
    connection(store).set_trace_callback(statements.append)
    try:
        delivery = store.next_delivery("a")
        assert delivery is not None
        store.delivery_failed(delivery.id, "HTTP 500", clock() + 1, status=500)
        store.delivery_done(delivery.id, 200)
        store.expire_deliveries("a", clock())
        store.webhook_stats()
        store.enqueue([request()])  # an event commit writes its deliveries
    finally:
        connection(store).set_trace_callback(None)
    steps = [(sql, row[3]) for sql in statements if sql.lstrip().upper().startswith(("SELECT", "UPDATE", "INSERT"))
             for row in connection(store).execute(f"EXPLAIN QUERY PLAN {sql}")]
    touched = [step for _sql, step in steps if "webhook_delivery" in step]
    assert touched
    bad = [(sql, step) for sql, step in steps if step.startswith("SCAN webhook_delivery")
           and "INDEX webhook_delivery_pending" not in step and "INDEX webhook_delivery_finished" not in step]
    assert bad == []
    on_deliveries = {sql for sql, step in steps if "webhook_delivery" in step}
    assert not [(sql, step) for sql, step in steps if sql in on_deliveries and "TEMP B-TREE" in step]


def test_webhook_config_is_read_into_typed_objects(tmp_path: Path) -> None:
    cfg = load_config(config_file(tmp_path, f"""
[[webhooks]]
url = "https://user:pw@erp.example.com:8443/hooks/sms?token=x"
secret = "{SECRET}"

[[webhooks]]
name = "crm"
url = "http://10.0.0.5/in"
events = ["received"]
secret = "{SECRET}"
expire_after = "2h"
timeout = 3
retry_base = "5s"
retry_max = "10m"
"""))
    first, second = cfg.webhooks
    assert first.name == "https://erp.example.com:8443/hooks/sms"  # no credentials in the name
    assert first.events == ("received", "message") and first.expire_after == 86400.0
    assert (second.name, second.events, second.expire_after) == ("crm", ("received",), 7200.0)
    assert (second.timeout, second.retry_base, second.retry_max) == (3.0, 5.0, 600.0)
    assert SECRET not in repr(first)
    assert parse_config({"store": {"path": str(tmp_path / "x.db")}}, tmp_path / "c.toml").webhooks == ()


@pytest.mark.parametrize(("text", "key", "reason"), [
    ('[webhooks]\nurl = "http://x/"', "webhooks", "write [[webhooks]]"),
    (f'[[webhooks]]\nsecret = "{SECRET}"', "webhooks[0].url", "is required"),
    (f'[[webhooks]]\nurl = "ftp://x/"\nsecret = "{SECRET}"', "webhooks[0].url", "http:// or https://"),
    (f'[[webhooks]]\nurl = "http://x:99999/"\nsecret = "{SECRET}"', "webhooks[0].url", "is not a URL"),
    ('[[webhooks]]\nurl = "http://x/"', "webhooks[0].secret", "is required"),
    ('[[webhooks]]\nurl = "http://x/"\nsecret = "short"', "webhooks[0].secret", "at least 16 characters"),
    (f'[[webhooks]]\nurl = "http://x/"\nsecret = "{SECRET}"\nevents = ["recieved"]', "webhooks[0].events[0]",
     "did you mean 'received'"),
    (f'[[webhooks]]\nurl = "http://x/"\nsecret = "{SECRET}"\nevents = []', "webhooks[0].events",
     "at least one event"),
    (f'[[webhooks]]\nurl = "http://x/"\nsecret = "{SECRET}"\nexpire_after = "soon"', "webhooks[0].expire_after",
     "duration"),
    (f'[[webhooks]]\nurl = "http://x/"\nsecret = "{SECRET}"\ntimeout = 0', "webhooks[0].timeout",
     "greater than 0"),
    (f'[[webhooks]]\nurl = "http://x/"\nsecret = "{SECRET}"\nretry_base = 60\nretry_max = 10',
     "webhooks[0].retry_max", "less than retry_base"),
    (f'[[webhooks]]\nurl = "http://x/"\nsecret = "{SECRET}"\nsecrett = "y"', "webhooks[0].secrett",
     "did you mean 'secret'"),
    (f'[[webhooks]]\nurl = "http://x/"\nsecret = "{SECRET}"\nca = "ca.pem"', "webhooks[0].ca",
     "only used with an https"),
    (f'[[webhooks]]\nurl = "https://x/"\nsecret = "{SECRET}"\nca = "missing.pem"', "webhooks[0].ca",
     "does not exist"),
    (f'[[webhooks]]\nurl = "http://x/a"\nsecret = "{SECRET}"\n[[webhooks]]\nurl = "http://x/a"\nsecret = "{SECRET}"',
     "webhooks[1].url", "give each webhook its own name"),
])
def test_a_bad_webhook_config_names_the_key(tmp_path: Path, text: str, key: str, reason: str) -> None:
    load_error(config_file(tmp_path, text), key, reason)


async def test_smsgw_status_shows_each_webhook_backlog(tmp_path: Path, receivers: Any, components: list[Webhooks],
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    working, down = await receivers(), await receivers(start=False)
    path = config_file(tmp_path, f"""
[[webhooks]]
name = "working"
url = "{working.url}"
secret = "{SECRET}"

[[webhooks]]
name = "down"
url = "{down.url}"
secret = "{SECRET}"
retry_base = 0.05
""")
    cfg = load_config(path)
    with Store(cfg.store.path) as store:
        component = Webhooks(cfg.webhooks, store, poll_interval=0.2)
        await component.start()
        components.append(component)
        for n in range(3):
            receive(store, 120 + n)
        await async_wait_until(lambda: store.webhook_stats()["working"]["delivered"] == 3, what="delivered")
        await async_wait_until(lambda: store.webhook_stats()["down"]["attempts"] >= 1, what="a failed attempt")
        await component.stop()
    args = argparse.Namespace(config=path, json=True)
    assert status_command.main(args) == 0
    doc = json.loads(capsys.readouterr().out)
    by_name = {hook["name"]: hook for hook in doc["webhooks"]}
    assert by_name["working"]["delivered"] == 3 and by_name["working"]["pending"] == 0
    assert by_name["down"]["pending"] == 3 and by_name["down"]["attempts"] >= 1
    assert by_name["down"]["url"] == down.url and by_name["down"]["configured"] is True
    assert "Connect" in by_name["down"]["last_error"] and by_name["down"]["oldest_pending_age"] >= 0
    assert by_name["down"]["events"] == ["received", "message"]
    args.json = False
    assert status_command.main(args) == 0
    text = capsys.readouterr().out
    line = next(line for line in text.splitlines() if line.startswith("down "))
    assert line.split()[1:4] == ["3", "0", "0"]  # pending, delivered, expired


def test_smsgw_run_refuses_a_bad_webhook_config_naming_the_key(tmp_path: Path) -> None:
    path = config_file(tmp_path, '[[webhooks]]\nurl = "http://127.0.0.1:9/hook"\nsecret = "short"\n')
    result = subprocess.run([sys.executable, "-m", "appliance", "run", "--config", str(path)], capture_output=True,
                            text=True, env=daemon_env(), cwd=ROOT, timeout=30)
    assert result.returncode == 2
    assert f"{path}: webhooks[0].secret: must be at least 16 characters" in result.stderr
    assert not (tmp_path / "smsgw.db").exists()  # nothing opened
