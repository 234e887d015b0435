"""`smsgw pdu decode|encode`: JSON lines, error lines, exit codes, stdin mode."""

from __future__ import annotations

import argparse
import io
import json
import sys

import pytest

from appliance.commands import pdu as pdu_command

DELIVER = "07911326040000F0040B911346610089F60000208062917314480CC8F71D14969741F977FD07"
REPORT = "0006D60B911326880736F4111011719551401110117195714000"


def run(argv: list[str]) -> int:
    """Parse and run exactly as `smsgw pdu ...` does (the CLI mounts this module's parser)."""
    parser = argparse.ArgumentParser(prog="smsgw pdu")
    pdu_command.add_arguments(parser)
    return pdu_command.main(parser.parse_args(argv))


def lines(capsys: pytest.CaptureFixture[str]) -> list[dict]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_decode_prints_one_json_object_per_pdu(capsys):
    assert run(["decode", DELIVER, REPORT]) == 0
    first, second = lines(capsys)
    assert first["type"] == "deliver" and first["text"] == "How are you?"
    assert first["timestamp"] == "2002-08-26T19:37:41-01:00"
    assert second["type"] == "status-report" and second["reference"] == 214 and second["status"] == 0


def test_malformed_pdu_prints_an_error_line_and_exits_1(capsys):
    assert run(["decode", DELIVER, "0791ZZ", DELIVER[:30]]) == 1
    good, bad_hex, truncated = lines(capsys)
    assert good["text"] == "How are you?"
    assert bad_hex == {"error": "bad hex: character 'Z'", "input": "0791ZZ"}
    assert truncated["error"].startswith("truncated") and truncated["input"] == DELIVER[:30]


def test_decode_reads_one_pdu_per_line_from_stdin(capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{DELIVER}\n\n  {REPORT}  \r\n"))
    assert run(["decode", "-"]) == 0
    assert [obj["type"] for obj in lines(capsys)] == ["deliver", "status-report"]


def test_decode_no_smsc_reads_a_bare_tpdu(capsys):
    assert run(["decode", "--no-smsc", "11000B916407281553F80000AA0AE8329BFD4697D9EC37"]) == 0
    (obj,) = lines(capsys)
    assert (obj["type"], obj["smsc"], obj["number"], obj["text"]) == (
        "submit",
        None,
        "+46708251358",
        "hellohello",
    )


def test_encode_then_decode_round_trips_a_long_emoji_text(capsys):
    text = "Grüße 😀 " * 20
    assert (
        run(["encode", "--to", "+4917012345678", "--report", "--reference", "9", "--validity", "3600", text])
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert result["encoding"] == "ucs2"
    assert len(result["parts"]) == 3
    assert all(part["tpdu_length"] == len(part["pdu"]) // 2 - 1 for part in result["parts"])
    assert run(["decode", *[part["pdu"] for part in result["parts"]]]) == 0
    decoded = lines(capsys)
    assert "".join(obj["text"] for obj in decoded) == text
    assert [obj["concat"]["sequence"] for obj in decoded] == [1, 2, 3]
    assert {obj["number"] for obj in decoded} == {"+4917012345678"}
    assert {obj["reference"] for obj in decoded} == {9}
    assert {obj["validity"] for obj in decoded} == {3600}


def test_encode_with_smsc_puts_the_smsc_field_first(capsys):
    assert run(["encode", "--to", "+27820001111", "--smsc", "+2782913593", "Hello World!"]) == 0
    (part,) = json.loads(capsys.readouterr().out)["parts"]
    assert part["pdu"].startswith("06917228195339")
    assert part["tpdu_length"] == len(part["pdu"]) // 2 - 7


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["encode", "--to", "+49x", "hi"], "bad address"),
        (["encode", "--to", "+4917012345", "--reference", "300", "hi"], "message reference"),
        (["encode", "--to", "+4917012345", "--validity", "-1", "hi"], "validity"),
        (["encode", "--to", "+4917012345", "--validity", "99999999999", "hi"], "63 weeks"),
    ],
)
def test_encode_bad_arguments_exit_2_with_a_message(capsys, argv, message):
    assert run(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert message in captured.err


def test_encode_without_to_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        run(["encode", "hi"])
    assert exc.value.code == 2
    assert "--to" in capsys.readouterr().err


def test_encode_with_a_national_language_uses_its_shift_table(capsys):
    # 23.038 A.2.1: the Turkish single shift table carries ş, ğ and İ
    assert run(["encode", "--to", "+905321234567", "--language", "tr", "Lütfen İstanbul şubemize uğrayınız"]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert obj["encoding"] == "gsm7" and obj["national_language"] == {"locking": None, "single": "tr"}
    assert len(obj["parts"]) == 1


def test_encode_with_an_unknown_language_exits_2(capsys):
    assert run(["encode", "--to", "+905321234567", "--language", "xx", "ğ"]) == 2
    assert "unknown national language 'xx'" in capsys.readouterr().err
