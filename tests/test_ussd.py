"""USSD at the modem layer: +CUSD answers as real networks send them, multi-step sessions, errors.

The answers come from the simulator (``drivers/simulator/ussd.py``) over real ptys, for every
profile (GSM text, UCS-2 hex, Huawei's packed GSM 7-bit hex). The parser tables use real +CUSD
lines, with their sources:

* faucamp/python-gsmmodem, ``test/test_modem.py`` (commit ff3682529fa69e55e253417927c28ce2e8304e73,
  ``test_sendUssd``): ``+CUSD: 0``/``1``/``2`` with text, and a ``+CUSD: 2`` answer whose quoted
  text spans three lines.
* Stack Overflow question 23102775 ("USSD received message decoding") and the SIM7600 notes quoted
  in docs/simulator.md: a Russian operator's balance as UCS-2 hex with DCS 72.
* JochenHoch2/gsm-ussd, ``README.sessions``: a session goes on while the network answers
  ``+CUSD: 1``; the client answers with ``AT+CUSD=1,"<reply>",15`` and cancels with ``AT+CUSD=2``.
"""

from __future__ import annotations

import asyncio

import pytest
from modem_fixtures import make_modem

from drivers import parsers
from drivers.errors import AtTimeout
from drivers.modem import Modem, UssdError
from drivers.simulator import Simulator

pytest_plugins = ["modem_fixtures"]

BALANCE = "Balance 10.00 EUR. Valid until 31.12.2026"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        # python-gsmmodem test_sendUssd, real network answers
        ('+CUSD: 0,"Available Balance: R 96.45 .",15', (0, "Available Balance: R 96.45 .", 15)),
        ('+CUSD: 1,"Hallo daar",15', (1, "Hallo daar", 15)),
        ('+CUSD: 2,"Totsiens",15', (2, "Totsiens", 15)),
        ('+CUSD: 2,"You have the following remaining balances:\n0 free minutes\n20 MORE Weekend minutes",15',
         (2, "You have the following remaining balances:\n0 free minutes\n20 MORE Weekend minutes", 15)),
        # Stack Overflow 23102775 / SIM7600: UCS-2 hex, DCS 72
        ('+CUSD: 0,"04110430043B0430043D0441003A00200031003500300020044004430431",72',
         (0, "04110430043B0430043D0441003A00200031003500300020044004430431", 72)),
        ("+CUSD: 4", (4, "", None)),
        ("+CUSD: 5", (5, "", None)),
    ],
)
def test_real_cusd_lines_parse(line: str, expected: tuple[int, str, int | None]) -> None:
    assert parsers.parse_cusd(line) == expected


def test_ucs2_answer_decodes() -> None:
    text = parsers.decode_ussd_text("04110430043B0430043D0441003A00200031003500300020044004430431", 72)
    assert text == "Баланс: 150 руб"


async def test_single_step_balance(modems: list[Modem]) -> None:
    reply = await modems[0].ussd("*100#")
    assert (reply.status, reply.text, reply.session_open) == (0, BALANCE, False)


async def test_a_multi_step_menu_over_several_lines_is_one_answer(modems: list[Modem]) -> None:
    modem = modems[0]
    menu = await modem.ussd("*101#")
    assert menu.session_open
    assert menu.text == "Main menu\n1 Balance\n2 Offers\n0 Exit"
    offers = await modem.ussd("2", reply=True)
    assert offers.session_open and offers.text.startswith("Offers\n1 1 GB")
    done = await modem.ussd("1", reply=True)
    assert (done.status, done.text) == (0, "1 GB booked. Thank you")
    # the session is over: the next code is a new request
    assert (await modem.ussd("*100#")).text == BALANCE


async def test_a_session_can_be_cancelled(simulator: Simulator, modems: list[Modem]) -> None:
    modem = modems[0]
    assert (await modem.ussd("*101#")).session_open
    await modem.ussd_cancel()
    assert simulator.modems[0].ussd.menu is None
    assert (await modem.ussd("*100#")).text == BALANCE


async def test_text_the_gsm_alphabet_cannot_carry_arrives_as_ucs2(modems: list[Modem]) -> None:
    reply = await modems[0].ussd("*102#")
    assert (reply.text, reply.dcs) == ("Баланс: 150 руб", 72)


async def test_the_balance_follows_the_simulated_account(simulator: Simulator, modems: list[Modem]) -> None:
    simulator.fault(0, "balance:3.50")
    assert (await modems[0].ussd("*100#")).text.startswith("Balance 3.50 EUR")


@pytest.mark.parametrize(("code", "status", "words"), [
    ("*103#", 2, "terminated by the network"),
    ("*104#", 5, "network time out"),
    ("*999#", 4, "not supported"),
])
async def test_network_errors_raise_ussd_error(modems: list[Modem], code: str, status: int, words: str) -> None:
    with pytest.raises(UssdError) as caught:
        await modems[0].ussd(code)
    assert caught.value.status == status
    assert words in str(caught.value) and code in str(caught.value)


async def test_no_answer_times_out_and_the_modem_stays_usable(modems: list[Modem]) -> None:
    modem = modems[0]
    with pytest.raises(AtTimeout, match=r"\*105#"):
        await modem.ussd("*105#", timeout=0.3)
    assert (await modem.ussd("*100#")).text == BALANCE


async def test_a_bad_code_is_refused_before_the_modem_sees_it(modems: list[Modem]) -> None:
    with pytest.raises(ValueError, match="digits"):
        await modems[0].ussd('*100#",15;+CFUN=0')
    with pytest.raises(ValueError, match="printable"):
        await modems[0].ussd('1"', reply=True)


@pytest.mark.parametrize("profile_name", ["generic"])
async def test_ucs2_character_set_answers_are_decoded(simulator: Simulator) -> None:
    modem = make_modem(simulator, 0)
    await modem.open()
    try:
        await modem.command('AT+CSCS="UCS2"')
        reply = await modem.ussd("*100#")
        assert (reply.text, reply.dcs) == (BALANCE, 72)
    finally:
        await modem.close()


async def test_two_requests_at_once_are_refused_not_mixed(modems: list[Modem]) -> None:
    modem = modems[0]
    first = asyncio.ensure_future(modem.ussd("*100#"))
    await asyncio.sleep(0)
    with pytest.raises(Exception, match="already waiting"):
        await modem.ussd("*100#")
    assert (await first).text == BALANCE
