"""The simulated network's USSD services: what it answers to a code, and multi-step menus.

3GPP TS 27.007 7.15: the client sends ``AT+CUSD=1,"<code>",15``, the modem says ``OK``, and the
network's answer arrives later as ``+CUSD: <m>[,"<str>",<dcs>]``; ``<m>`` 0 is a final answer, 1 a
question the client answers with another ``AT+CUSD=1,"<reply>",15`` in the same session, 2 the
network ended the session, 4 the operation is not supported, 5 the network timed out.

The answers copy what real networks send (the captures are cited in ``docs/simulator.md``):

==========  ==============================================================================
``*100#``   ``+CUSD: 0,"Balance 10.00 EUR ...",15`` (the balance is set with the ``balance:AMOUNT``
            fault)
``*101#``   a menu over several lines (``+CUSD: 1,"Main menu\\n1 Balance\\n2 Offers\\n0 Exit",15``):
            ``1`` answers the balance and ends (``+CUSD: 0``), ``2`` opens a second menu, ``0`` ends
            with ``+CUSD: 2,"Goodbye",15``, anything else asks again
``*102#``   a Cyrillic answer that GSM 7-bit cannot carry: always UCS-2 hex, DCS 72
``*103#``   ``+CUSD: 2`` (the network ends the session without an answer)
``*104#``   ``+CUSD: 5`` (network time out)
``*105#``   no answer at all (the client's timeout)
other       ``+CUSD: 4`` (operation not supported)
==========  ==============================================================================
"""

from __future__ import annotations

from dataclasses import dataclass

#: The answer of ``*102#``: Russian "Balance: 150 rub", as operators send it (UCS-2, DCS 72).
CYRILLIC_BALANCE = "Баланс: 150 руб"

MAIN_MENU = "Main menu\n1 Balance\n2 Offers\n0 Exit"
OFFERS_MENU = "Offers\n1 1 GB for 5.00 EUR\n0 Back"


@dataclass(frozen=True)
class UssdAnswer:
    status: int                # +CUSD <m>
    text: str | None = None    # None: "+CUSD: <m>" alone
    ucs2: bool = False         # the network sends it as UCS-2 (DCS 72) whatever the character set


class UssdService:
    """One subscriber's USSD sessions on the simulated network."""

    def __init__(self, balance: str = "10.00") -> None:
        self.balance = balance
        self.menu: str | None = None  # the open session's menu, None when no session is open

    def set_balance(self, amount: str) -> None:
        try:
            float(amount)
        except ValueError:
            raise ValueError(f"balance takes an amount, as in balance:4.20, not {amount!r}") from None
        self.balance = amount

    def cancel(self) -> None:
        self.menu = None

    def _balance_text(self) -> str:
        return f"Balance {self.balance} EUR. Valid until 31.12.2026"

    def request(self, code: str) -> UssdAnswer | None:
        """The network's answer to ``code`` (a new request, or a reply in the open session); None
        when the network never answers."""
        if self.menu is not None:
            return self._reply(code.strip())
        if code == "*100#":
            return UssdAnswer(0, self._balance_text())
        if code == "*101#":
            self.menu = "main"
            return UssdAnswer(1, MAIN_MENU)
        if code == "*102#":
            return UssdAnswer(0, CYRILLIC_BALANCE, ucs2=True)
        if code == "*103#":
            return UssdAnswer(2)
        if code == "*104#":
            return UssdAnswer(5)
        if code == "*105#":
            return None
        return UssdAnswer(4)

    def _reply(self, choice: str) -> UssdAnswer:
        if self.menu == "main":
            if choice == "1":
                self.menu = None
                return UssdAnswer(0, self._balance_text())
            if choice == "2":
                self.menu = "offers"
                return UssdAnswer(1, OFFERS_MENU)
            if choice == "0":
                self.menu = None
                return UssdAnswer(2, "Goodbye")
            return UssdAnswer(1, "Invalid choice\n" + MAIN_MENU)
        # offers
        if choice == "1":
            self.menu = None
            return UssdAnswer(0, "1 GB booked. Thank you")
        if choice == "0":
            self.menu = "main"
            return UssdAnswer(1, MAIN_MENU)
        return UssdAnswer(1, "Invalid choice\n" + OFFERS_MENU)
