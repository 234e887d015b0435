"""The self-alerts (appliance/self_alerts) on a real store file with a clock the test moves: each
condition's trigger, cooldown, recovery and restart; the config's errors; the daily caps they pass;
the modem an alert must not go through."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from store_helpers import T0, Clock

from appliance.config import ConfigError, parse_config
from appliance.intake import Intake, IntakePolicy
from appliance.self_alerts.config import SelfAlertsConfig
from appliance.self_alerts.facts import Facts, ModemFact
from appliance.self_alerts.monitor import SelfAlerts
from appliance.store import Store

INSTALLER = "+4917612345678"
BOSS = "+4917612345679"
UP, DOWN = ModemFact(True), ModemFact(False, "not answering", "timed out")
TWO_UP = {"sim0": UP, "sim1": UP}
MIB = 1024 * 1024


def config_for(tmp_path: Path, table: dict[str, Any] | None = None, **extra: Any) -> Any:
    data: dict[str, Any] = {
        "store": {"path": str(tmp_path / "smsgw.db")},
        "contacts": {"installer": INSTALLER, "boss": BOSS},
        "groups": {"staff": ["installer", "boss"]},
        "self_alerts": {"to": ["installer"], "name": "pumphouse", **(table or {})},
        **extra,
    }
    return parse_config(data, tmp_path / "smsgw.toml")


class Harness:
    """A SelfAlerts over a real store; ``facts`` is what the next check sees."""

    def __init__(self, tmp_path: Path, clock: Clock, table: dict[str, Any] | None = None, **extra: Any) -> None:
        self.tmp_path, self.clock = tmp_path, clock
        self.config = config_for(tmp_path, table, **extra)
        self.store = Store(tmp_path / "smsgw.db", clock=clock)
        self.facts = Facts(modems=dict(TWO_UP), disk_free=10_000 * MIB, disk_path=str(tmp_path))
        self.monitor = self.restart()

    def restart(self) -> SelfAlerts:
        settings = self.config.self_alerts
        assert settings is not None
        self.monitor = SelfAlerts(settings, self.store, Intake(IntakePolicy.from_config(self.config), self.store),
                                  lambda: self.facts, clock=self.clock)
        return self.monitor

    def set(self, **changes: Any) -> None:
        self.facts = replace(self.facts, **changes)

    def check(self, after: float = 0.0, *, take: bool = True) -> list[dict[str, Any]]:
        """Move the clock by ``after`` seconds, check; the messages queued by that check, which a modem
        then takes (claims), unless ``take`` is false."""
        self.clock.advance(after)
        ids = self.monitor.check()
        queued = [m for m in (self.store.message(i) for i in ids) if m is not None]
        for modem in ("sim1", "sim0") if take else ():
            while self.store.claim(modem, lease=600) is not None:
                pass
        return queued

    def texts(self) -> list[str]:
        return [str(m["text"]) for m in reversed(self.store.outbox(100)) if m["source"] == "self"]


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def harness(tmp_path: Path, clock: Clock) -> Iterator[Harness]:
    h = Harness(tmp_path, clock)
    yield h
    h.store.close()


# --- config -----------------------------------------------------------------------------------


def test_defaults_and_durations_like_the_rest_of_the_config(tmp_path: Path) -> None:
    settings = config_for(tmp_path).self_alerts
    assert settings == SelfAlertsConfig(to=(INSTALLER,), name="pumphouse")
    assert (settings.modem_down, settings.no_send, settings.queue_age, settings.broker_down) == (600, 900, 1800, 600)
    assert (settings.disk_free_mb, settings.cooldown, settings.priority) == (200, 3600, "critical")
    custom = config_for(tmp_path, {"to": ["staff", "+4917612345670"], "modem_down": "30s", "no_send": 90,
                                   "queue_age": "2h", "broker_down": False, "disk_free_mb": False,
                                   "sim_full": False, "cooldown": "10m", "check_interval": "5s"}).self_alerts
    assert custom.to == (INSTALLER, BOSS, "+4917612345670")
    assert (custom.modem_down, custom.no_send, custom.queue_age, custom.broker_down) == (30, 90, 7200, None)
    assert (custom.disk_free_mb, custom.sim_full, custom.cooldown, custom.check_interval) == (None, False, 600, 5)
    assert parse_config({"store": {"path": str(tmp_path / "db")}}, tmp_path / "smsgw.toml").self_alerts is None


@pytest.mark.parametrize(("table", "key", "reason"), [
    ({"modem_dwon": "10m"}, "self_alerts.modem_dwon", "unknown key (did you mean 'modem_down'?)"),
    ({"no_send": "soon"}, "self_alerts.no_send", "must be a number of seconds or a duration like '90s'"),
    ({"queue_age": True}, "self_alerts.queue_age", "or false to turn it off, not true"),
    ({"broker_down": 0}, "self_alerts.broker_down", "must be longer than 0"),
    ({"disk_free_mb": "200"}, "self_alerts.disk_free_mb", "must be a number of MiB"),
    ({"disk_free_mb": 0}, "self_alerts.disk_free_mb", "must be at least 1"),
    ({"priority": "urgent"}, "self_alerts.priority", "must be one of critical, high, normal, low"),
    ({"check_interval": "100ms"}, "self_alerts.check_interval", "must be at least 1 s"),
    ({"to": ["nobody"]}, "self_alerts.to[0]", "'nobody' is not a contact, a group or a number"),
    ({"to": []}, "self_alerts.to", "must be a name or number, or a non-empty array of them"),
])
def test_config_errors_name_file_key_and_reason(tmp_path: Path, table: dict[str, Any], key: str,
                                                reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        config_for(tmp_path, table).check("self_alerts")
    assert info.value.key == key
    assert reason in info.value.reason
    assert str(info.value).startswith(f"{tmp_path / 'smsgw.toml'}: {key}: ")


def test_to_is_required(tmp_path: Path) -> None:
    data = {"store": {"path": str(tmp_path / "db")}, "self_alerts": {"modem_down": "1m"}}
    with pytest.raises(ConfigError, match=r"self_alerts\.to: is required"):
        parse_config(data, tmp_path / "smsgw.toml").check("self_alerts")


# --- modem_down -------------------------------------------------------------------------------


def test_modem_down_alerts_after_its_threshold_through_another_modem(harness: Harness) -> None:
    harness.set(modems={"sim0": DOWN, "sim1": UP})
    assert harness.check() == []  # pending
    assert harness.check(599) == []
    (alert,) = harness.check(1)
    assert alert["text"] == ("pumphouse: modem sim0 down for 10 min (not answering: timed out); "
                             "1 of 2 modem(s) healthy")
    assert alert["to"] == INSTALLER and alert["priority"] == "critical"
    assert harness.store.avoided_modems(alert["id"]) == ["sim0"]
    assert harness.check(60) == []  # active: nothing more while it lasts
    harness.set(modems=dict(TWO_UP))
    (recovered,) = harness.check(60)
    assert recovered["text"] == "pumphouse: modem sim0 back in service after 12 min"
    assert harness.store.avoided_modems(recovered["id"]) == []


def test_a_short_outage_sends_nothing(harness: Harness) -> None:
    harness.set(modems={"sim0": DOWN, "sim1": UP})
    harness.check()
    harness.check(300)
    harness.set(modems=dict(TWO_UP))
    assert harness.check(1) == []
    harness.set(modems={"sim0": DOWN, "sim1": UP})
    assert harness.check(1) == []
    assert harness.check(599) == []  # the clock started again
    assert len(harness.check(1)) == 1


def test_cooldown_holds_a_second_alert_and_its_recovery(harness: Harness) -> None:
    down, up = {"sim0": DOWN, "sim1": UP}, dict(TWO_UP)
    harness.set(modems=down)
    harness.check()
    assert len(harness.check(600)) == 1  # T+600: alert
    harness.set(modems=up)
    assert len(harness.check(60)) == 1  # recovered
    harness.set(modems=down)
    harness.check(60)
    assert harness.check(600) == []  # T+1320: held, the last alert was 720 s ago (cooldown 1 h)
    assert harness.monitor.status()["conditions"]["modem_down:sim0"]["state"] == \
        "active (alert held by the cooldown)"
    harness.set(modems=up)
    assert harness.check(60) == []  # its alert was never sent: neither is its recovery
    harness.set(modems=down)
    harness.check(60)
    assert harness.check(600) == []  # T+2040: still within the hour of the first alert (T+600)
    assert harness.check(2159) == []
    assert len(harness.check(1)) == 1  # T+4200: the cooldown is over, it still holds: alert
    assert len(harness.texts()) == 3


def test_restart_sends_no_second_alert_and_still_reports_the_recovery(harness: Harness) -> None:
    harness.set(modems={"sim0": DOWN, "sim1": UP})
    harness.check()
    assert len(harness.check(600)) == 1
    harness.restart()  # a new daemon life on the same store
    assert harness.check(30) == []
    harness.restart()
    harness.set(modems=dict(TWO_UP))
    (recovered,) = harness.check(30)
    assert "sim0 back in service" in recovered["text"]
    harness.restart()
    assert harness.check(30) == []
    assert len(harness.texts()) == 2


def test_a_crash_between_queuing_and_recording_queues_nothing_twice(harness: Harness) -> None:
    harness.set(modems={"sim0": DOWN, "sim1": UP})
    harness.check()
    harness.clock.advance(600)
    state_set = harness.store.state_set
    calls: list[str] = []

    def crash_on_notified(namespace: str, key: str, value: Any) -> None:
        if isinstance(value, dict) and value.get("notified"):
            calls.append(key)
            raise KeyboardInterrupt("killed")  # the process dies after the intake committed
        state_set(namespace, key, value)

    harness.store.state_set = crash_on_notified  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        harness.monitor.check()
    harness.store.state_set = state_set  # type: ignore[method-assign]
    assert calls == ["modem_down:sim0"] and len(harness.texts()) == 1
    harness.restart()
    harness.check(5)  # queues the same alert again: its idempotency key finds the first
    assert len(harness.texts()) == 1
    assert harness.store.state_get("self_alert", "modem_down:sim0")["notified"] is True


def test_a_pending_condition_counts_again_from_the_start(harness: Harness) -> None:
    harness.set(modems={"sim0": DOWN, "sim1": UP})
    harness.check()
    harness.check(500)
    harness.clock.advance(3600)  # no daemon ran for an hour
    harness.restart()
    assert harness.check(1) == []
    assert len(harness.check(600)) == 1


def test_a_modem_no_longer_configured_is_forgotten(harness: Harness) -> None:
    harness.set(modems={"sim0": DOWN, "sim1": UP})
    harness.check()
    harness.check(600)
    harness.set(modems={"sim1": UP})
    assert harness.check(30) == []
    assert harness.store.state_get("self_alert", "modem_down:sim0") is None


# --- the queue ---------------------------------------------------------------------------------


def test_no_send_counts_from_the_last_send_and_clears_with_the_next(harness: Harness) -> None:
    harness.set(queued=4, last_sent_at=T0 - 120, send_errors={"sim0": "CMS ERROR: 38"})
    assert harness.check() == []  # from now: the queue was not seen before
    harness.set(last_sent_at=T0 + 100)
    assert harness.check(999) == []
    (alert,) = harness.check(1)  # 15 min after the last send
    assert alert["text"] == "pumphouse: nothing sent for 15 min with 4 message(s) waiting (last error: CMS ERROR: 38)"
    assert harness.store.avoided_modems(alert["id"]) == ["sim0"]  # the failing modem; sim1 is left
    harness.set(last_sent_at=harness.clock.now + 10)
    (recovered,) = harness.check(10)
    assert recovered["text"] == "pumphouse: sending again after 15 min"  # T+100 to T+1010
    harness.set(queued=0)
    assert harness.check(3600) == []


def test_no_send_avoids_nothing_when_every_modem_fails(harness: Harness) -> None:
    harness.set(queued=1, send_errors={"sim0": "timeout", "sim1": "timeout"})
    harness.check()
    (alert,) = harness.check(900)
    assert harness.store.avoided_modems(alert["id"]) == []


def test_an_empty_queue_is_no_stall(harness: Harness) -> None:
    harness.set(queued=0, last_sent_at=None)
    harness.check()
    assert harness.check(86400) == []


def test_queue_age_is_the_age_of_the_oldest_queued_message(harness: Harness) -> None:
    harness.set(queued=2, oldest_queued_at=T0 - 1700, last_sent_at=T0)
    assert harness.check() == []
    (alert,) = harness.check(100)
    assert alert["text"] == "pumphouse: the oldest queued message has waited 30 min (2 waiting)"
    harness.set(oldest_queued_at=harness.clock.now - 60)  # the old one went; the next is young
    (recovered,) = harness.check(1)
    assert recovered["text"].startswith("pumphouse: the queue caught up")


# --- broker, disk, SIM storage, balance -------------------------------------------------------


def test_broker_down_and_back(harness: Harness) -> None:
    harness.set(broker="127.0.0.1:1883", broker_connected=False, broker_error="connection refused")
    harness.check()
    (alert,) = harness.check(600)
    assert alert["text"] == "pumphouse: MQTT broker 127.0.0.1:1883 not connected for 10 min (connection refused)"
    assert harness.store.avoided_modems(alert["id"]) == []
    harness.set(broker_connected=True)
    (recovered,) = harness.check(5)
    assert recovered["text"] == "pumphouse: MQTT broker connected again after 10 min"


def test_no_mqtt_configured_no_broker_alert(harness: Harness) -> None:
    harness.set(broker=None, broker_connected=False)
    harness.check()
    assert harness.check(86400) == []


def test_disk_free_below_the_threshold_alerts_at_once(harness: Harness) -> None:
    harness.set(disk_free=150 * MIB)
    (alert,) = harness.check()
    assert alert["text"] == (f"pumphouse: 150 MiB free on the disk of the store {harness.tmp_path} "
                             "(alert below 200 MiB)")
    harness.set(disk_free=300 * MIB)
    assert "disk space of the store back" in harness.check(60)[0]["text"]


def test_sim_storage_full_avoids_that_modem(harness: Harness) -> None:
    harness.set(storage_full={"sim1": {"used": 30, "total": 30, "cleared": 0}})
    (alert,) = harness.check()
    assert alert["text"] == "pumphouse: SIM storage of modem sim1 full (30/30); new SMS cannot arrive"
    assert harness.store.avoided_modems(alert["id"]) == ["sim1"]
    harness.set(modems={"sim0": UP, "sim1": DOWN})  # not read while the modem is away: neither full nor cleared
    assert [m for m in harness.check(30) if "SIM storage" in m["text"]] == []
    harness.set(modems=dict(TWO_UP), storage_full={})
    assert harness.check(30)[0]["text"] == "pumphouse: SIM storage of modem sim1 has room again after 1 min"


def test_balance_below_low(harness: Harness) -> None:
    record = {"modem": "sim0", "balance": 3.5, "unit": "EUR", "low": 5.0, "below_low": True, "error": None}
    harness.set(balances={"sim0": record})
    (alert,) = harness.check()
    assert alert["text"] == "pumphouse: balance of modem sim0 is 3.5 EUR, below 5.0 EUR"
    assert harness.store.avoided_modems(alert["id"]) == ["sim0"]
    harness.set(balances={"sim0": {**record, "balance": 20.0, "below_low": False}})
    assert harness.check(3600)[0]["text"] == "pumphouse: balance of modem sim0 back above its low mark after 1 h"


def test_a_condition_turned_off_is_not_checked(tmp_path: Path, clock: Clock) -> None:
    h = Harness(tmp_path, clock, {"modem_down": False, "disk_free_mb": False})
    h.set(modems={"sim0": DOWN, "sim1": UP}, disk_free=1)
    h.check()
    assert h.check(86400) == []
    h.store.close()


# --- the intake: counted as "self", past the clients' caps, to every recipient --------------


def test_self_alerts_pass_caps_meant_for_clients_but_not_their_own(tmp_path: Path, clock: Clock) -> None:
    h = Harness(tmp_path, clock, {"to": ["staff"]}, sources={"*": {"daily_cap": 0}})
    h.set(disk_free=1)
    alerts = h.check()
    assert sorted(m["to"] for m in alerts) == sorted([INSTALLER, BOSS])
    assert h.store.stats()["sources_today"]["self"]["accepted"] == 2
    h.store.close()
    capped = Harness(tmp_path / "capped", clock, sources={"self": {"daily_cap": 0}})
    capped.set(disk_free=1)
    assert capped.check() == []  # refused by its own cap (logged); not tried again at every check
    assert capped.check(60) == []
    capped.store.close()


def test_smsgw_status_lists_the_conditions(harness: Harness) -> None:
    from appliance.commands.status import collect, render

    harness.set(modems={"sim0": DOWN, "sim1": UP}, disk_free=1)
    harness.check()
    harness.check(600)
    doc = collect(harness.store, harness.config)
    assert doc["self_alerts"]["modem_down:sim0"]["state"] == "active"
    assert doc["self_alerts"]["disk_free"]["state"] == "active"
    assert doc["self_alerts"]["modem_down:sim0"]["detail"].startswith("modem sim0 down for ")
    assert "{held}" not in doc["self_alerts"]["modem_down:sim0"]["detail"]
    assert doc["sources_today"]["self"]["accepted"] == 2
    text = render(doc)
    assert "Self-alerts" in text and "modem_down:sim0  active" in text
    harness.set(modems=dict(TWO_UP), disk_free=10_000 * MIB)
    harness.check(3600)  # cleared, the cooldown over: nothing left to show
    assert "(every condition fine)" in render(collect(harness.store, harness.config))


def test_an_alert_still_queued_when_its_condition_clears_is_withdrawn(harness: Harness) -> None:
    harness.set(modems={"sim0": DOWN, "sim1": DOWN})
    harness.check()
    alert, other = harness.check(600, take=False)  # no modem can send them
    assert "modem sim0 down" in alert["text"] and "modem sim1 down" in other["text"]
    harness.set(modems={"sim0": UP, "sim1": DOWN})
    assert harness.check(60, take=False) == []  # no "back" for a "down" nobody got
    assert harness.store.message(other["id"])["state"] == "queued"  # type: ignore[index]
    withdrawn = harness.store.message(alert["id"])
    assert withdrawn is not None and withdrawn["state"] == "expired"
    assert withdrawn["last_error"] == "withdrawn: the condition cleared before the alert could be sent"


def test_a_quiet_gateway_writes_nothing_at_every_check(harness: Harness) -> None:
    harness.set(modems={"sim0": DOWN, "sim1": UP})
    harness.check()
    harness.check(600)
    harness.set(modems=dict(TWO_UP))
    harness.check(60)  # recovered; the cooldown record stays
    writes: list[str] = []
    state_set = harness.store.state_set

    def counting(namespace: str, key: str, value: Any) -> None:
        writes.append(key)
        state_set(namespace, key, value)

    harness.store.state_set = counting  # type: ignore[method-assign]
    for _ in range(10):
        harness.check(30)
    assert writes == []  # one commit per change of state, not one per check
    harness.check(3600)
    assert writes == ["modem_down:sim0"]  # the cooldown over: the record goes
    assert harness.store.state_get("self_alert", "modem_down:sim0") is None


def test_a_busy_queue_that_keeps_sending_writes_nothing_at_every_check(harness: Harness) -> None:
    harness.set(queued=50, oldest_queued_at=T0, last_sent_at=T0)
    harness.check()
    writes: list[str] = []
    state_set = harness.store.state_set

    def counting(namespace: str, key: str, value: Any) -> None:
        writes.append(key)
        state_set(namespace, key, value)

    harness.store.state_set = counting  # type: ignore[method-assign]
    for _ in range(20):  # sending all along: each check sees a newer last send and a younger queue
        harness.set(last_sent_at=harness.clock.now, oldest_queued_at=harness.clock.now - 60)
        assert harness.check(30) == []
    assert writes == []


def test_the_recipients_need_only_contacts_and_groups(tmp_path: Path) -> None:
    config = config_for(tmp_path, {"to": ["staff"]}, alerts=[{"name": "broken"}])  # no topic: a bad rule
    assert config.self_alerts is not None and config.self_alerts.to == (INSTALLER, BOSS)
    with pytest.raises(ConfigError, match=r"alerts\[0\]\.topic"):
        config.check("rules")
