"""Per-source daily caps (appliance/caps.py) on a real SQLite store."""

from __future__ import annotations

import pytest
from config_errors import config_error

from appliance.caps import CapTally, DailyCapExceeded, check_daily_cap, parse_caps
from appliance.store import OutboundRequest, Store

SOURCES = {"mqtt": {"daily_cap": 100}, "alert:*": {"daily_cap": 2}}


def test_daily_cap_counts_todays_accepted_messages_per_source() -> None:
    store = Store(":memory:")
    caps = parse_caps("smsgw.toml", {"sources": SOURCES})
    now = store.clock()
    check_daily_cap(caps, store, "alert:freezer", 2, now)
    store.enqueue([OutboundRequest("+4917000000001", "a", "alert:freezer"),
                   OutboundRequest("+4917000000001", "b", "alert:freezer")], now=now)
    with pytest.raises(DailyCapExceeded) as info:
        check_daily_cap(caps, store, "alert:freezer", 1, now)
    assert str(info.value) == "daily cap of 2 messages for source 'alert:freezer' reached (2 accepted today)"
    check_daily_cap(caps, store, "alert:other", 2, now)  # a pattern caps each source on its own
    check_daily_cap(caps, store, "cli", 1000, now)  # no cap
    with pytest.raises(DailyCapExceeded) as info:
        check_daily_cap(caps, store, "alert:other", 3, now)
    assert str(info.value) == "daily cap of 2 messages for source 'alert:other' reached (0 accepted today, 3 more refused)"


def test_mqtt_cap_is_shared_by_mqtt_sources_without_their_own_cap() -> None:
    store = Store(":memory:")
    caps = parse_caps("smsgw.toml", {"sources": {"mqtt": {"daily_cap": 3}, "mqtt:boiler": {"daily_cap": 1}}})
    assert caps.cap_key("mqtt:kitchen") == "mqtt" and caps.cap_for("mqtt:kitchen") == 3
    assert caps.cap_key("mqtt:boiler") == "mqtt:boiler" and caps.cap_key("cli") is None
    now = store.clock()
    store.enqueue([OutboundRequest("+4917000000001", "a", "mqtt"),
                   OutboundRequest("+4917000000001", "b", "mqtt:kitchen"),
                   OutboundRequest("+4917000000001", "c", "mqtt:boiler")], now=now)
    check_daily_cap(caps, store, "mqtt:hall", 1, now)  # 2 of 3 used: mqtt:boiler has its own cap
    with pytest.raises(DailyCapExceeded) as info:
        check_daily_cap(caps, store, "mqtt:hall", 2, now)
    assert str(info.value) == ("daily cap of 3 messages for source 'mqtt' reached (2 accepted today, 2 more refused) "
                               "(request from 'mqtt:hall')")
    assert info.value.key == "mqtt" and info.value.source == "mqtt:hall"
    with pytest.raises(DailyCapExceeded, match="source 'mqtt:boiler' reached"):
        check_daily_cap(caps, store, "mqtt:boiler", 1, now)


def test_cap_tally_counts_batches_committed_together() -> None:
    store = Store(":memory:")
    caps = parse_caps("smsgw.toml", {"sources": {"mqtt": {"daily_cap": 2}}})
    tally = CapTally(caps, store, store.clock())
    tally.charge("mqtt", 1)
    tally.charge("mqtt:a", 1)
    with pytest.raises(DailyCapExceeded, match=r"\(2 accepted today\)"):
        tally.charge("mqtt", 1)
    tally.charge("cli", 50)  # uncapped sources are not limited


def test_sources_table_from_the_config() -> None:
    caps = parse_caps("smsgw.toml", {"sources": SOURCES})
    assert caps.cap_for("mqtt") == 100
    assert caps.cap_for("alert:freezer") == 2
    assert caps.cap_for("cli") is None


@pytest.mark.parametrize(("sources", "key", "fragment"), [
    ({"cli": {"daily_cap": -1}}, "sources.cli.daily_cap", "0 or more"),
    ({"cli": {"cap": 5}}, "sources.cli.cap", "unknown key"),
    ({"cli": {"daily_cap": "many"}}, "sources.cli.daily_cap", "must be an integer, not a string ('many')"),
    ({"cli": {"daily_cap": True}}, "sources.cli.daily_cap", "must be an integer, not a boolean"),
    ({"cli": 5}, "sources.cli", "must be a table, not an integer"),
    ("cli", "sources", "must be a table of source = { daily_cap = N }"),
])
def test_sources_errors_name_the_key(sources: object, key: str, fragment: str) -> None:
    config_error(lambda: parse_caps("smsgw.toml", {"sources": sources}), "smsgw.toml", key, fragment)


def test_the_gateways_own_source_has_only_its_own_cap() -> None:
    everyone = parse_caps("smsgw.toml", {"sources": {"*": {"daily_cap": 0}, "mqtt": {"daily_cap": 0}}})
    assert everyone.cap_key("self") is None  # a pattern meant for clients never silences the gateway
    assert everyone.cap_key("selfish") == "*"
    own = parse_caps("smsgw.toml", {"sources": {"*": {"daily_cap": 0}, "self": {"daily_cap": 3}}})
    assert own.cap_key("self") == "self" and own.cap_for("self") == 3
