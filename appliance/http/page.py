"""The status page's HTML, written on the server from plain data (pure functions, no template engine).

Every value that comes from outside (an SMS text, a number, an operator name, a modem's error) goes
through :func:`e` (``html.escape`` with quotes), so an SMS that says ``<script>`` shows as text. The
page has no script and loads nothing: the CSS is inline, the charts are inline SVG
(``appliance.http.charts``), and its Content-Security-Policy (``CSP``) forbids anything else. The
layout is one column on a phone (``viewport`` meta, tables that scroll sideways) and a grid of
modem cards on a wider screen.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from html import escape
from typing import Any

from appliance.http.charts import line_chart

#: No script, no frame, no image, nothing from elsewhere; only the styles inline in the page.
CSP = ("default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
           "Cache-Control": "no-store", "X-Frame-Options": "DENY"}

STYLE = """
*{box-sizing:border-box}
body{font:15px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d1d1d;background:#f3f4f6}
header{background:#1f3a5f;color:#fff;padding:.6rem 1rem;display:flex;flex-wrap:wrap;gap:.4rem 1.2rem;
align-items:center}
header h1{font-size:1.15rem;margin:0 auto 0 0}
header form{margin:0}
main{max-width:72rem;margin:0 auto;padding:.8rem}
section{background:#fff;border-radius:6px;padding:.8rem;margin:0 0 .8rem;box-shadow:0 1px 2px #0002}
h2{font-size:1.05rem;margin:0 0 .6rem}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(16rem,1fr));gap:.6rem}
.card{border:1px solid #ddd;border-radius:6px;padding:.6rem}
.card h3{margin:0 0 .3rem;font-size:1rem}
dl{display:grid;grid-template-columns:auto 1fr;gap:.1rem .6rem;margin:0}
dt{color:#555}dd{margin:0;overflow-wrap:anywhere}
.ok{color:#006b3c}.bad{color:#b00020}.warn{color:#8a5a00}
.badge{display:inline-block;padding:0 .4rem;border-radius:4px;background:#eee;font-size:.85rem}
.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{text-align:left;padding:.25rem .4rem;border-bottom:1px solid #eee;vertical-align:top}
td.text{max-width:24rem;overflow-wrap:anywhere;white-space:pre-wrap}
.depths{display:flex;flex-wrap:wrap;gap:.4rem}
.depths span{background:#eef2f7;border-radius:4px;padding:.2rem .5rem}
.chart{width:100%;height:auto;display:block}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(20rem,1fr));gap:.8rem}
form.send{display:grid;gap:.5rem;max-width:32rem}
input,textarea,button{font:inherit;padding:.45rem;border:1px solid #bbb;border-radius:4px;width:100%}
button{background:#1f3a5f;color:#fff;border:0;cursor:pointer;width:auto;padding:.45rem 1rem}
header button{background:#fff;color:#1f3a5f}
.flash{padding:.5rem .8rem;border-radius:4px;margin:0 0 .8rem}
.flash.ok{background:#e3f5ea}.flash.error{background:#fde7ea}
.login{max-width:22rem;margin:10vh auto}
.login form{display:grid;gap:.6rem}
"""


def e(value: object) -> str:
    """``value`` as HTML text: escaped, quotes too; None as a dash."""
    if value is None or value == "":
        return "&ndash;"
    return escape(str(value), quote=True)


def when(iso: object) -> str:
    """An RFC 3339 time of the views as ``2026-12-02 03:47:27`` (UTC, to the second), escaped."""
    if not isinstance(iso, str):
        return e(iso)
    return f'<time datetime="{e(iso)}">{e(iso[:19].replace("T", " "))}</time>'


def _doc(title: str, body: str) -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<meta name="color-scheme" content="light"><title>{e(title)}</title>'
            f"<style>{STYLE}</style></head><body>{body}</body></html>\n")


def _flash(messages: Sequence[tuple[str, str]]) -> str:
    return "".join(f'<p class="flash {e(kind)}" role="status">{e(text)}</p>' for kind, text in messages)


def login_page(csrf: str, *, error: str | None = None, password: bool = True) -> str:
    """The login form: the page password or an API token with the ``read`` scope."""
    what = "Password or API token" if password else "API token (read scope)"
    flash = _flash([("error", error)]) if error else ""
    body = (f'<main class="login"><section><h2>smsgw status</h2>{flash}'
            '<form method="post" action="/login">'
            f'<input type="hidden" name="csrf" value="{e(csrf)}">'
            f'<label for="secret">{e(what)}</label>'
            '<input id="secret" name="secret" type="password" autocomplete="current-password" required autofocus>'
            '<button type="submit">Log in</button></form></section></main>')
    return _doc("smsgw – log in", body)


def error_page(message: str) -> str:
    """A refused form post: what went wrong and the way back to the page."""
    body = (f'<main class="login"><section><h2>smsgw status</h2>{_flash([("error", message)])}'
            '<p><a href="/">Back to the status page</a></p></section></main>')
    return _doc("smsgw – error", body)


@dataclass
class PageData:
    """What the status page shows, read beforehand from the store and the daemon."""

    version: str
    hostname: str
    uptime: float
    mqtt: bool | None                # None: no [mqtt]; else connected
    modems: list[dict[str, Any]]     # appliance.http.views.modem
    depths: Mapping[str, int]        # outbound messages per state
    outbound: list[dict[str, Any]]   # appliance.http.views.message, newest first
    inbound: list[dict[str, Any]]    # appliance.http.views.received, newest first
    signal: Mapping[str, Sequence[tuple[float, float | None]]]  # per modem: (time, dBm)
    queue: Mapping[str, Sequence[tuple[float, float | None]]]   # per state: (time, messages)
    now: float
    window: float = 24 * 3600.0
    webhooks: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


def duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {secs} s"


def _gateway(data: PageData) -> str:
    if data.mqtt is None:
        broker = '<span class="badge">MQTT off</span>'
    elif data.mqtt:
        broker = '<span class="ok">connected</span>'
    else:
        broker = '<span class="bad">disconnected</span>'
    healthy = sum(1 for m in data.modems if m.get("healthy"))
    return ('<section id="gateway"><h2>Gateway</h2><dl>'
            f"<dt>Version</dt><dd>{e(data.version)}</dd>"
            f"<dt>Host</dt><dd>{e(data.hostname)}</dd>"
            f"<dt>Uptime</dt><dd>{e(duration(data.uptime))}</dd>"
            f"<dt>Broker</dt><dd>{broker}</dd>"
            f"<dt>Modems</dt><dd>{healthy} of {len(data.modems)} in rotation</dd>"
            "</dl></section>")


def _signal(modem: Mapping[str, Any]) -> str:
    signal = modem.get("signal")
    if not isinstance(signal, dict) or signal.get("dbm") is None:
        return e(None)
    percent = f" ({signal['percent']} %)" if signal.get("percent") is not None else ""
    return e(f"{signal['dbm']} dBm{percent}")


def _balance(modem: Mapping[str, Any]) -> str:
    balance = modem.get("balance")
    if not isinstance(balance, dict):
        return e(None)
    if balance.get("amount") is None:
        return e(balance.get("error"))
    text = f"{balance['amount']:g} {balance.get('unit') or ''}".strip() if isinstance(
        balance["amount"], int | float) else str(balance["amount"])
    css = ' class="warn"' if balance.get("below_low") else ""
    return f"<span{css}>{e(text)}</span>"


def _modem(modem: Mapping[str, Any]) -> str:
    state = str(modem.get("state") or "unknown")
    css = "ok" if modem.get("healthy") else "bad"
    operator = modem.get("operator")
    if not isinstance(operator, dict):
        operator = {}
    error = modem.get("last_error") or modem.get("error")
    when = f" ({modem['last_error_at']})" if modem.get("last_error_at") and error else ""
    return (f'<div class="card modem" data-modem="{e(modem.get("id"))}"><h3>{e(modem.get("id"))} '
            f'<span class="{css} state">{e(state)}</span></h3><dl>'
            f"<dt>Signal</dt><dd>{_signal(modem)}</dd>"
            f"<dt>Operator</dt><dd>{e(operator.get('name') or operator.get('numeric'))}"
            f"{' · ' + e(modem.get('registration')) if modem.get('registration') else ''}</dd>"
            f"<dt>SIM</dt><dd>{e(modem.get('sim'))}</dd>"
            f"<dt>Balance</dt><dd>{_balance(modem)}</dd>"
            f"<dt>Model</dt><dd>{e(modem.get('model'))}</dd>"
            f"<dt>Last error</dt><dd>{e(error)}{e(when) if when else ''}</dd>"
            f"<dt>Recoveries</dt><dd>{e(modem.get('recoveries', 0))}</dd>"
            "</dl></div>")


def _modems(data: PageData) -> str:
    cards = "".join(_modem(m) for m in data.modems) or "<p>No modem is configured.</p>"
    return f'<section id="modems"><h2>Modems</h2><div class="cards">{cards}</div></section>'


def _queue(data: PageData) -> str:
    depths = "".join(f'<span data-state="{e(state)}">{e(state)}: <b>{e(count)}</b></span>'
                     for state, count in data.depths.items())
    hooks = ""
    if data.webhooks:
        rows = "".join(f"<tr><td>{e(name)}</td><td>{e(w.get('pending', 0))}</td>"
                       f"<td>{e(duration(w['oldest_pending_age']) if w.get('oldest_pending_age') else None)}</td>"
                       f"<td>{e(w.get('last_error'))}</td></tr>" for name, w in data.webhooks.items())
        hooks = ('<h2>Webhooks</h2><div class="scroll"><table><thead><tr><th>Webhook</th><th>Pending</th>'
                 f"<th>Oldest</th><th>Last error</th></tr></thead><tbody>{rows}</tbody></table></div>")
    return f'<section id="queue"><h2>Queue</h2><div class="depths">{depths}</div>{hooks}</section>'


def _charts(data: PageData) -> str:
    start = data.now - data.window
    signal = line_chart(data.signal, start, data.now, unit="dBm", title="Signal per modem, last 24 h")
    queue = line_chart(data.queue, start, data.now, unit="messages", title="Queue depth, last 24 h", floor=0.0)
    return ('<section id="history"><h2>Last 24 hours</h2><div class="charts">'
            f'<figure id="signal-chart" style="margin:0"><figcaption>Signal (dBm)</figcaption>{signal}</figure>'
            f'<figure id="queue-chart" style="margin:0"><figcaption>Queue depth</figcaption>{queue}</figure>'
            "</div></section>")


def _send_form(csrf: str, can_send: bool, form: Mapping[str, str]) -> str:
    if not can_send:
        return ('<section id="send"><h2>Send a test SMS</h2><p>This login may only read: log in with the page '
                "password or a token with the <code>send</code> scope to send.</p></section>")
    return ('<section id="send"><h2>Send a test SMS</h2><form class="send" method="post" action="/send">'
            f'<input type="hidden" name="csrf" value="{e(csrf)}">'
            '<label for="to">To</label>'
            f'<input id="to" name="to" type="tel" inputmode="tel" required value="{escape(form.get("to", ""))}" '
            'placeholder="+4917612345678">'
            '<label for="text">Text</label>'
            f'<textarea id="text" name="text" rows="3" required maxlength="1600">{escape(form.get("text", ""))}'
            "</textarea>"
            '<div><button type="submit">Send</button></div></form></section>')


def _outbound(rows: Sequence[Mapping[str, Any]]) -> str:
    body = "".join(
        f'<tr data-id="{e(m["id"])}"><td>{e(m["id"])}</td><td>{when(m.get("created_at"))}</td><td>{e(m.get("to"))}</td>'
        f'<td class="text">{e(m.get("text"))}</td><td class="state">{e(m.get("state"))}</td>'
        f"<td>{e(m.get('modem'))}</td><td>{e(m.get('source'))}</td><td>{e(m.get('error'))}</td></tr>"
        for m in rows) or '<tr><td colspan="8">No messages yet.</td></tr>'
    return ('<section id="outbound"><h2>Sent (last 50)</h2><div class="scroll"><table><thead><tr><th>#</th>'
            "<th>Queued (UTC)</th><th>To</th><th>Text</th><th>State</th><th>Modem</th><th>Source</th><th>Error</th>"
            f"</tr></thead><tbody>{body}</tbody></table></div></section>")


def _inbound(rows: Sequence[Mapping[str, Any]]) -> str:
    body = "".join(
        f'<tr data-id="{e(m["id"])}"><td>{e(m["id"])}</td><td>{when(m.get("received_at"))}</td>'
        f'<td>{e(m.get("from"))}</td><td class="text">{e(m.get("text"))}</td><td>{e(m.get("modem"))}</td>'
        f"<td>{e(m.get('state'))}{' (parts missing)' if m.get('partial') else ''}</td></tr>"
        for m in rows) or '<tr><td colspan="6">Nothing received yet.</td></tr>'
    return ('<section id="inbound"><h2>Received (last 50)</h2><div class="scroll"><table><thead><tr><th>#</th>'
            "<th>Received (UTC)</th><th>From</th><th>Text</th><th>Modem</th><th>State</th>"
            f"</tr></thead><tbody>{body}</tbody></table></div></section>")


def status_page(data: PageData, *, who: str, csrf: str, can_send: bool,
                flash: Sequence[tuple[str, str]] = (), form: Mapping[str, str] | None = None) -> str:
    """The whole status page for a logged-in user."""
    header = ('<header><h1>smsgw status</h1>'
              f'<span>logged in: {e(who)}</span>'
              '<form method="post" action="/logout">'
              f'<input type="hidden" name="csrf" value="{e(csrf)}"><button type="submit">Log out</button>'
              "</form></header>")
    body = (header + "<main>" + _flash(flash) + _gateway(data) + _modems(data) + _queue(data) + _charts(data)
            + _send_form(csrf, can_send, form or {}) + _outbound(data.outbound) + _inbound(data.inbound) + "</main>")
    return _doc(f"smsgw – {data.hostname}", body)
