"""appliance.frozen: the frozen records of the config, the store and the intake behave as the frozen
dataclasses they replace (fields, defaults, equality, hash, repr, assignment refused, replace)."""

from __future__ import annotations

from typing import ClassVar

import pytest

from appliance.config import WebhookConfig
from appliance.frozen import FrozenInstanceError, field, fields, frozen, replace


@frozen
class Reading:
    UNIT: ClassVar[str] = "dBm"
    modem: str
    rssi: int = -70
    history: list[int] = field(default_factory=list)
    token: str = field(default="", repr=False)
    cache: dict[str, int] = field(default_factory=dict, init=False, repr=False, compare=False)


def test_fields_come_from_the_annotations_in_order_without_class_variables() -> None:
    assert [f.name for f in fields(Reading)] == ["modem", "rssi", "history", "token", "cache"]
    assert Reading.__match_args__ == ("modem", "rssi", "history", "token")
    assert Reading.UNIT == "dBm" and Reading.rssi == -70


def test_defaults_and_factories_give_each_record_its_own_value() -> None:
    a, b = Reading("sim0"), Reading(modem="sim1", rssi=-60)
    assert (a.rssi, b.rssi, a.history, a.cache) == (-70, -60, [], {})
    assert a.history is not b.history and a.cache is not b.cache


def test_equality_and_hash_are_over_the_compared_fields_of_the_same_class() -> None:
    a = Reading("sim0", -70, [], "x")
    same = Reading("sim0", history=[], token="x")
    same.cache["seen"] = 1  # not compared
    assert a == same and a != Reading("sim0", -71) and a != ("sim0", -70, [], "x")
    assert hash(Reading("sim0", history=())) == hash(Reading("sim0", history=()))  # type: ignore[arg-type]


def test_assignment_and_deletion_are_refused() -> None:
    record = Reading("sim0")
    with pytest.raises(FrozenInstanceError, match="'rssi'"):
        record.rssi = 1  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del record.modem  # type: ignore[misc]


def test_repr_names_the_fields_but_not_those_left_out() -> None:
    assert repr(Reading("sim0", token="secret")) == "Reading(modem='sim0', rssi=-70, history=[])"
    assert "hunter2hunter2hunter2" not in repr(WebhookConfig("hook", "https://example.org/", "hunter2hunter2hunter2"))


@pytest.mark.parametrize(("args", "kwargs", "message"), [
    ((), {}, "missing required argument: 'modem'"),
    (("sim0", 1, [], "", "extra"), {}, "takes 4 positional arguments but 5 were given"),
    (("sim0",), {"modem": "sim1"}, "multiple values for argument 'modem'"),
    (("sim0",), {"cache": {}}, "unexpected keyword argument 'cache'"),
])
def test_wrong_arguments_raise_type_error(args: tuple[object, ...], kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(TypeError, match=message):
        Reading(*args, **kwargs)


def test_replace_copies_with_changes_and_refuses_fields_not_taken_by_init() -> None:
    record = Reading("sim0", -80, [1])
    changed = replace(record, rssi=-50)
    assert (changed.modem, changed.rssi, changed.history, record.rssi) == ("sim0", -50, [1], -80)
    with pytest.raises(ValueError, match="'cache'"):
        replace(record, cache={})


def test_post_init_runs_after_the_fields_are_set() -> None:
    seen = []

    @frozen
    class Checked:
        value: int

        def __post_init__(self) -> None:
            seen.append(self.value)

    Checked(3)
    assert seen == [3]


@frozen
class Plain:
    """Plain defaults only: keywords take the short way in __init__."""

    to: str
    text: str = "hi"
    parts: int | None = None


def test_a_record_of_plain_defaults_built_from_keywords_is_the_same_record() -> None:
    assert Plain(to="a") == Plain("a") == Plain("a", "hi", None)
    assert vars(Plain(parts=2, to="a")) == {"to": "a", "text": "hi", "parts": 2}
    assert list(vars(Plain(parts=2, to="a"))) == ["to", "text", "parts"]  # in field order
    with pytest.raises(TypeError, match="missing required argument: 'to'"):
        Plain(text="x")
    with pytest.raises(TypeError, match="unexpected keyword argument 'cc'"):
        Plain(to="a", cc="b")  # type: ignore[call-arg]
