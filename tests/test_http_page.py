"""The status page ``GET /`` over real HTTP: login (page password or a ``read`` token), the session
cookie, CSRF on every form, logout, the test SMS through the send intake, and escaping.

The daemon is ``smsgw run`` as a subprocess with the simulator's modems (``http_fixtures``); the
client is aiohttp over loopback with its own cookie jar, as a browser keeps cookies. The cookie
attributes are checked against RFC 6265 (section 4.1.2.5 Secure, 4.1.2.6 HttpOnly) and
draft-ietf-httpbis-rfc6265bis (section 4.1.2.7 SameSite); the CSRF tokens follow the synchronizer
token pattern of the OWASP CSRF Prevention Cheat Sheet. The browser test is test_status_page_browser.py.
"""

from __future__ import annotations

import html
import re
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from http_fixtures import Gateway, GatewayFactory, wait_modems_online
from waiting import async_wait_until

from appliance.config import ConfigError, load_config
from appliance.http.charts import line_chart
from appliance.http.sessions import Sessions
from appliance.store import OutboundRequest, Store
from drivers.simulator import Simulator

pytest_plugins = ["daemon_helpers", "http_fixtures", "mosquitto"]

PASSWORD = "correct horse battery"
OUTSIDE = "+4915112345678"
PAGE = f'page_password = "{PASSWORD}"'
SCRIPT = "<script>alert('x')</script> & \"quoted\""


class Browser:
    """A client that keeps cookies like a browser and does not follow redirects on its own."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True),
                                             timeout=aiohttp.ClientTimeout(total=30))

    async def close(self) -> None:
        await self.session.close()

    async def get(self, path: str) -> tuple[int, str, Any]:
        async with self.session.get(self.gateway.url + path, allow_redirects=False) as response:
            return response.status, await response.text(), response.headers

    async def post(self, path: str, form: dict[str, str]) -> tuple[int, str, Any]:
        async with self.session.post(self.gateway.url + path, data=form, allow_redirects=False) as response:
            return response.status, await response.text(), response.headers

    async def csrf(self, path: str = "/") -> str:
        status, text, _ = await self.get(path)
        assert status == 200, text
        match = re.search(r'name="csrf" value="([^"]+)"', text)
        assert match is not None, text
        return html.unescape(match.group(1))

    async def login(self, secret: str) -> tuple[int, str, Any]:
        return await self.post("/login", {"csrf": await self.csrf("/login"), "secret": secret})


@pytest.fixture
async def browsers() -> Any:
    made: list[Browser] = []

    def make(gateway: Gateway) -> Browser:
        made.append(Browser(gateway))
        return made[-1]

    yield make
    for browser in made:
        await browser.close()


def set_cookies(headers: Any) -> dict[str, Any]:
    cookies: dict[str, Any] = {}
    for header in headers.getall("Set-Cookie", []):
        parsed = SimpleCookie()
        parsed.load(header)
        cookies.update({name: morsel for name, morsel in parsed.items()})
    return cookies


async def test_without_a_session_the_page_redirects_to_the_login_form(gateway_factory: GatewayFactory,
                                                                       browsers: Any) -> None:
    gateway = await gateway_factory(http=PAGE)
    browser = browsers(gateway)
    status, _, headers = await browser.get("/")
    assert status == 303 and headers["Location"] == "/login"
    status, text, headers = await browser.get("/login")
    assert status == 200 and '<form method="post" action="/login">' in text
    assert 'name="viewport"' in text and "<script" not in text
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    # a bearer token on / is not a login: the page needs its session
    status, _, headers = await gateway.request("GET", "/", token="reader", allow_redirects=False)
    assert status == 303


async def test_the_page_password_logs_in_with_a_strict_httponly_session_cookie(
        gateway_factory: GatewayFactory, browsers: Any, sim: Simulator) -> None:
    gateway = await gateway_factory(http=PAGE)
    await wait_modems_online(gateway)
    browser = browsers(gateway)
    status, _, headers = await browser.login(PASSWORD)
    assert status == 303 and headers["Location"] == "/"
    cookie = set_cookies(headers)["smsgw_session"]
    assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/"
    assert int(cookie["max-age"]) == 12 * 3600 and not cookie["secure"]  # plain HTTP here
    assert len(cookie.value) >= 43  # 256 random bits
    status, text, _ = await browser.get("/")
    assert status == 200
    assert "logged in: page" in text
    for modem in ("sim0", "sim1"):
        assert f'data-modem="{modem}"' in text
    assert text.count('class="ok state"') == 2  # both in rotation
    assert 'id="signal-chart"' in text and 'id="queue-chart"' in text and "<svg" in text
    assert "MQTT off" in text  # no [mqtt] in this config


async def test_a_wrong_password_is_401_and_failed_logins_are_limited_per_address(
        gateway_factory: GatewayFactory, browsers: Any) -> None:
    gateway = await gateway_factory(http=PAGE + "\nauth_failures = 3")
    browser = browsers(gateway)
    for _ in range(3):
        status, text, _ = await browser.login("wrong password")
        assert status == 401 and "Wrong password or token." in text
    status, text, _ = await browser.login(PASSWORD)  # even the right one, for the rest of the minute
    assert status == 429 and "Too many failed attempts" in text
    status, _, _ = await gateway.request("GET", "/api/v1/status", token="reader")  # the same address
    assert status == 429
    assert PASSWORD not in gateway.daemon.log_text() and "failed login from 127.0.0.1" in gateway.daemon.log_text()


async def test_a_read_token_logs_in_but_may_not_send_and_a_send_token_sends_as_itself(
        gateway_factory: GatewayFactory, browsers: Any, sim: Simulator) -> None:
    gateway = await gateway_factory()  # no page_password: tokens only
    await wait_modems_online(gateway)
    reader = browsers(gateway)
    status, text, _ = await reader.login(gateway.tokens["sender"][0])  # send only, no read
    assert status == 403 and "lacks the &#x27;read&#x27; scope" in text
    status, _, _ = await reader.login(gateway.tokens["reader"][0])
    assert status == 303
    status, text, _ = await reader.get("/")
    assert "logged in: reader" in text and 'action="/send"' not in text and "may only read" in text
    csrf = await reader.csrf()
    status, _, _ = await reader.post("/send", {"csrf": csrf, "to": OUTSIDE, "text": "from a reader"})
    assert status == 303
    with Store(gateway.db) as store:
        assert store.messages() == []
    status, text, _ = await reader.get("/")
    assert "reader may not send" in text

    erp = browsers(gateway)
    assert (await erp.login(gateway.tokens["erp"][0]))[0] == 303
    status, _, headers = await erp.post("/send", {"csrf": await erp.csrf(), "to": OUTSIDE, "text": "from the erp"})
    assert status == 303 and headers["Location"] == "/#outbound"
    with Store(gateway.db) as store:
        (message,) = store.messages()
    assert message["source"] == "http:erp" and message["text"] == "from the erp"


async def test_the_test_sms_goes_through_the_intake_and_appears_in_the_list(
        gateway_factory: GatewayFactory, browsers: Any, sim: Simulator) -> None:
    gateway = await gateway_factory(http=PAGE, extra='\n[sources."http:page"]\ndaily_cap = 1\n')
    await wait_modems_online(gateway)
    browser = browsers(gateway)
    await browser.login(PASSWORD)
    status, _, _ = await browser.post("/send", {"csrf": await browser.csrf(), "to": OUTSIDE, "text": "page test"})
    assert status == 303
    with Store(gateway.db) as store:
        (message,) = store.messages()
    assert message["source"] == "http:page" and message["to"] == OUTSIDE

    async def sent() -> bool:
        return any(record["text"] == "page test" for record in sim.network.sent)

    await async_wait_until(sent, timeout=15, interval=0.05, what="the test SMS sent")
    status, text, _ = await browser.get("/")
    assert f"Message {message['id']} to {OUTSIDE} is queued." in text  # said once, after the redirect
    assert f'<tr data-id="{message["id"]}">' in text and "page test" in text
    status, text, _ = await browser.get("/")
    assert "is queued." not in text

    # the intake's refusals: the daily cap of http:page, a bad number; the form keeps what was typed
    for to, reason in ((OUTSIDE, "daily cap"), ("12ab", "")):
        status, _, headers = await browser.post("/send", {"csrf": await browser.csrf(), "to": to, "text": "again"})
        assert status == 303 and headers["Location"] == "/#send"
        status, text, _ = await browser.get("/")
        assert "Not sent:" in text and reason in text
        assert f'value="{to}"' in text and ">again</textarea>" in text
    with Store(gateway.db) as store:
        assert len(store.messages()) == 1


async def test_every_form_needs_its_csrf_token(gateway_factory: GatewayFactory, browsers: Any) -> None:
    gateway = await gateway_factory(http=PAGE)
    browser = browsers(gateway)
    await browser.get("/login")  # the login cookie, without the form's token
    status, text, _ = await browser.post("/login", {"secret": PASSWORD})
    assert status == 403 and "expired" in text
    status, _, _ = await browser.post("/login", {"secret": PASSWORD, "csrf": "forged"})
    assert status == 403
    other = browsers(gateway)  # a token from another browser's login form does not fit this cookie
    status, _, _ = await browser.post("/login", {"secret": PASSWORD, "csrf": await other.csrf("/login")})
    assert status == 403
    assert (await browser.get("/"))[0] == 303  # none of that logged in

    assert (await browser.login(PASSWORD))[0] == 303
    status, _, _ = await browser.post("/send", {"to": OUTSIDE, "text": "forged"})
    assert status == 403
    status, _, _ = await browser.post("/send", {"csrf": "x" * 43, "to": OUTSIDE, "text": "forged"})
    assert status == 403
    status, _, _ = await browser.post("/logout", {"csrf": "forged"})
    assert status == 403 and (await browser.get("/"))[0] == 200  # still logged in
    with Store(gateway.db) as store:
        assert store.messages() == []
    async with browser.session.post(gateway.url + "/send", json={"to": OUTSIDE, "text": "json"},
                                    allow_redirects=False) as response:
        assert response.status == 415  # a form only


async def test_logout_ends_the_session_on_the_server(gateway_factory: GatewayFactory, browsers: Any) -> None:
    gateway = await gateway_factory(http=PAGE)
    browser = browsers(gateway)
    _, _, headers = await browser.login(PASSWORD)
    session_id = set_cookies(headers)["smsgw_session"].value
    status, _, headers = await browser.post("/logout", {"csrf": await browser.csrf()})
    assert status == 303 and headers["Location"] == "/login"
    assert set_cookies(headers)["smsgw_session"]["max-age"] == "0"
    assert (await browser.get("/"))[0] == 303
    replay = browsers(gateway)  # the old cookie, kept by someone else, is worth nothing now
    replay.session.cookie_jar.update_cookies({"smsgw_session": session_id})
    assert (await replay.get("/"))[0] == 303


def test_a_session_expires_after_its_lifetime() -> None:
    now = [1000.0]
    sessions = Sessions(3600.0, clock=lambda: now[0])
    session = sessions.create("page", "http:page", can_send=True)
    assert sessions.get(session.id) is session and sessions.get("unknown") is None and sessions.get(None) is None
    other = sessions.create("reader", "http:reader", can_send=False)
    assert session.csrf != other.csrf and session.id != other.id
    now[0] += 3599.0
    assert sessions.get(session.id) is session
    now[0] += 1.0
    assert sessions.get(session.id) is None and sessions.get(other.id) is None and len(sessions) == 0


async def test_sms_text_with_markup_is_shown_as_text(gateway_factory: GatewayFactory, browsers: Any,
                                                     sim: Simulator) -> None:
    gateway = await gateway_factory(http=PAGE)
    await wait_modems_online(gateway)
    sim.inject(0, "+4917000000001", SCRIPT)
    with Store(gateway.db) as store:
        store.enqueue([OutboundRequest(to=OUTSIDE, text=SCRIPT, source="cli")])

    async def received() -> bool:
        with Store(gateway.db) as store:
            return bool(store.inbox())

    await async_wait_until(received, timeout=15, interval=0.05, what="the SMS received")
    browser = browsers(gateway)
    await browser.login(PASSWORD)
    _, text, _ = await browser.get("/")
    assert "<script" not in text
    escaped = "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &quot;quoted&quot;"
    assert text.count(escaped) == 2  # once each way


@pytest.mark.parametrize(("setting", "reason"), [
    ('page_password = "short"', "http.page_password: must have at least 8 characters, not 5"),
    ("page_password = 12345678", "http.page_password: must be a string, not an integer"),
    ('page_session = "2s"', "http.page_session: must be from 1 minute to 30 days"),
    ('page_session = "soon"', "http.page_session: must be a number of seconds or a duration"),
    ('page_pasword = "correct horse"', "http.page_pasword: unknown key (did you mean 'page_password'?)"),
])
def test_page_settings_are_checked_naming_file_and_key(tmp_path: Path, setting: str, reason: str) -> None:
    path = tmp_path / "smsgw.toml"
    path.write_text(f'[store]\npath = "{tmp_path / "smsgw.db"}"\n\n[http]\nlisten = "127.0.0.1:8080"\n{setting}\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"{path}: {reason}"), str(caught.value)


def test_page_settings_have_their_defaults_and_the_password_is_not_in_the_repr(tmp_path: Path) -> None:
    path = tmp_path / "smsgw.toml"
    path.write_text(f'[store]\npath = "{tmp_path / "smsgw.db"}"\n\n[http]\nlisten = "8080"\n{PAGE}\n'
                    'page_session = "7d"\n')
    http = load_config(path).http
    assert http is not None and http.page_password == PASSWORD and http.page_session == 7 * 86400
    assert PASSWORD not in repr(http)


async def test_a_form_over_max_body_is_413_and_sends_nothing(gateway_factory: GatewayFactory, browsers: Any) -> None:
    gateway = await gateway_factory(http=PAGE)
    browser = browsers(gateway)
    await browser.login(PASSWORD)
    status, text, _ = await browser.post("/send", {"csrf": await browser.csrf(), "to": OUTSIDE,
                                                   "text": "x" * 70_000})
    assert status == 413 and "too large" in text and 'href="/"' in text
    with Store(gateway.db) as store:
        assert store.messages() == []
    assert (await browser.get("/"))[0] == 200  # the session is unharmed


async def test_over_tls_the_session_cookie_is_secure(gateway_factory: GatewayFactory, tls_certs: Any,
                                                     browsers: Any) -> None:
    import ssl

    context = ssl.create_default_context(cafile=str(tls_certs.ca))
    gateway = await gateway_factory(http=PAGE, tls=(tls_certs.server_cert, tls_certs.server_key))
    browser = browsers(gateway)
    await browser.session.close()
    browser.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context),
                                            cookie_jar=aiohttp.CookieJar(unsafe=True))
    status, _, headers = await browser.login(PASSWORD)
    assert status == 303
    assert set_cookies(headers)["smsgw_session"]["secure"]
    assert (await browser.get("/"))[0] == 200


# --- the charts (pure) -------------------------------------------------------------------------


def test_a_chart_breaks_its_line_where_samples_are_missing() -> None:
    start = 1_790_000_000.0
    samples = [(start + n * 60, -70.0 - n) for n in range(5)]  # one run
    samples += [(start + 20 * 60 + n * 60, -80.0) for n in range(3)]  # after a 16-minute gap: another
    samples += [(start + 30 * 60, None), (start + 31 * 60, -75.0), (start + 32 * 60, None)]  # a lone reading
    svg = line_chart({"sim0": samples}, start, start + 3600, unit="dBm", title="Signal")
    assert svg.count("<polyline") == 2 and svg.count("<circle") == 1
    first = re.search(r'points="([^"]+)"', svg)
    assert first is not None and len(first.group(1).split()) == 5
    xs = [float(point.split(",")[0]) for point in first.group(1).split()]
    assert xs == sorted(xs) and xs[0] >= 44  # left to right, inside the plot


def test_a_chart_escapes_its_names_and_says_when_it_has_no_samples() -> None:
    svg = line_chart({"<b>x</b>": []}, 0.0, 86400.0, unit="a&b", title='"t"')
    assert "<b>" not in svg and "&lt;b&gt;x&lt;/b&gt;" in svg and "a&amp;b" in svg and "&quot;t&quot;" in svg
    assert "no samples yet" in svg and "<polyline" not in svg


async def test_revoking_a_token_ends_the_page_sessions_it_opened(gateway_factory: GatewayFactory,
                                                                browsers: Any) -> None:
    from test_http_api import cli

    gateway = await gateway_factory(http=PAGE)
    by_token, by_password = browsers(gateway), browsers(gateway)
    assert (await by_token.login(gateway.tokens["reader"][0]))[0] == 303
    assert (await by_password.login(PASSWORD))[0] == 303
    assert (await by_token.get("/"))[0] == 200
    assert (await cli("token", "--config", str(gateway.config), "revoke", "reader"))[0] == 0

    async def logged_out() -> bool:
        return (await by_token.get("/"))[0] == 303

    await async_wait_until(logged_out, timeout=10, interval=0.1, what="the revoked token's session ended")
    assert "the session of reader ended" in gateway.daemon.log_text()
    assert (await by_password.get("/"))[0] == 200  # the password's session is not the token's
    status, text, _ = await by_token.login(gateway.tokens["reader"][0])
    assert status == 401


def test_every_outside_value_on_the_page_is_escaped() -> None:
    """Markup in anything the page shows from outside (an operator name from the network, a modem's
    error, a number, a webhook name, a token name, a refused request's text) stays text."""
    from appliance.http.page import PageData, login_page, status_page

    evil = '<x-evil a="1">\'&'
    modem = {"id": evil, "state": evil, "healthy": True, "signal": {"dbm": -70, "percent": 60},
             "operator": {"name": evil, "numeric": evil}, "registration": evil, "sim": evil, "model": evil,
             "last_error": evil, "last_error_at": evil, "recoveries": evil,
             "balance": {"amount": evil, "unit": evil, "below_low": True}}
    message = {"id": 1, "created_at": evil, "to": evil, "text": evil, "state": evil, "modem": evil, "source": evil,
               "error": evil}
    received = {"id": 2, "received_at": evil, "from": evil, "text": evil, "modem": evil, "state": evil, "partial": True}
    data = PageData(version=evil, hostname=evil, uptime=5.0, mqtt=False, modems=[modem], depths={evil: 1},
                    outbound=[message], inbound=[received], signal={evil: [(0.0, -70.0), (60.0, -71.0)]},
                    queue={evil: [(0.0, 1.0)]}, now=120.0,
                    webhooks={evil: {"pending": 1, "oldest_pending_age": 5.0, "last_error": evil}})
    page = status_page(data, who=evil, csrf=evil, can_send=True, flash=[(evil, evil)], form={"to": evil, "text": evil})
    page += login_page(evil, error=evil)
    assert "<x-evil" not in page and 'a="1"' not in page
    assert page.count("&lt;x-evil a=&quot;1&quot;&gt;") >= 30
