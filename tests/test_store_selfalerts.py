"""The store's part of the self-alerts (appliance/store_selfalerts.py) on a real SQLite file: the
modems a message avoids (written with the message, honoured by claim and next_due_at, pruned once
the message is done) and the clients' queue."""

from __future__ import annotations

from store_helpers import T0, Clock, request

from appliance.store import Store

pytest_plugins = ["store_fixtures"]


def test_claim_leaves_a_message_to_the_modems_it_does_not_avoid(store: Store) -> None:
    (avoiding,) = store.enqueue([request(text="not via sim0", avoid_modems=("sim0", "sim2"))])
    assert store.avoided_modems(avoiding.id) == ["sim0", "sim2"]
    assert store.claim("sim0", lease=60) is None
    assert store.claim("sim2", lease=60) is None
    assert store.next_due_at(modem_id="sim0") is None
    assert store.next_due_at(modem_id="sim1") == T0
    claimed = store.claim("sim1", lease=60)
    assert claimed is not None and claimed.id == avoiding.id


def test_other_messages_are_not_held_back(store: Store) -> None:
    (first,) = store.enqueue([request(text="avoids sim0", avoid_modems=("sim0",), priority="critical")])
    (second,) = store.enqueue([request(to="+491701234568", text="any modem")])
    claimed = store.claim("sim0", lease=60)
    assert claimed is not None and claimed.id == second.id
    assert store.avoided_modems(second.id) == []
    assert store.avoided_modems(first.id) == ["sim0"]


def test_a_repeated_id_keeps_the_first_messages_avoid_list(store: Store) -> None:
    (first,) = store.enqueue([request(text="x", client_key="k", avoid_modems=("sim0",))])
    (again,) = store.enqueue([request(text="x", client_key="k", avoid_modems=("sim1",))])
    assert again.duplicate and again.id == first.id
    assert store.avoided_modems(first.id) == ["sim0"]


def test_prune_avoided_drops_the_rows_of_messages_done(store: Store, clock: Clock) -> None:
    (done,) = store.enqueue([request(text="sent", avoid_modems=("sim0",))])
    (waiting,) = store.enqueue([request(to="+491701234568", text="waits", avoid_modems=("sim1",))])
    store.fail(done.id, "given up")
    assert store.prune_avoided() == 1
    assert store.avoided_modems(done.id) == []
    assert store.avoided_modems(waiting.id) == ["sim1"]
    assert store.state_all("self_alert") == {}


def test_client_queue_leaves_out_the_gateways_own_messages(store: Store, clock: Clock) -> None:
    assert store.client_queue() == (0, None)
    store.enqueue([request(text="alert", source="self", priority="critical")])
    assert store.client_queue() == (0, None)  # only the gateway's own wait
    clock.advance(10)
    (low,) = store.enqueue([request(to="+491701234568", text="low", priority="low")])
    clock.advance(10)
    store.enqueue([request(to="+491701234569", text="high", priority="high")])
    assert store.client_queue() == (3, T0 + 10)  # three wait (the alert too); the oldest client one
    store.fail(low.id, "x")
    assert store.client_queue() == (2, T0 + 20)


def test_withdraw_takes_back_all_or_nothing(store: Store) -> None:
    a, b = store.enqueue([request(text="down"), request(to="+491701234568", text="down")])
    claimed = store.claim("sim0", lease=60)
    assert claimed is not None and claimed.id == a.id
    assert store.withdraw([a.id, b.id], "cleared") is False  # one left with a modem: both stay
    assert store.message(b.id)["state"] == "queued"  # type: ignore[index]
    assert store.withdraw([b.id], "cleared") is True
    assert store.message(b.id)["state"] == "expired"  # type: ignore[index]
    assert store.message(b.id)["last_error"] == "cleared"  # type: ignore[index]
    assert store.withdraw([], "cleared") is False


def test_prune_takes_the_avoid_rows_of_messages_done(store: Store, clock: Clock) -> None:
    (done,) = store.enqueue([request(text="sent", avoid_modems=("sim0",))])
    (waiting,) = store.enqueue([request(to="+491701234568", text="waits", avoid_modems=("sim1",))])
    store.fail(done.id, "given up")
    totals = store.prune(clock.now, retention_days=30)
    assert totals["avoid_modems"] == 1 and totals["messages"] == 0  # the message itself is kept 30 days
    assert store.avoided_modems(done.id) == [] and store.avoided_modems(waiting.id) == ["sim1"]
