"""The status page in a real browser: Debian's chromium driven by playwright (the Python package; its
own browser download is never used), against ``smsgw run`` with the simulator's two modems and a real
mosquitto. Log in with the page password, see both modems, send a test SMS from the form and see it
in the outbound list, then sent; markup in an SMS stays text (no script runs); on a phone-sized
screen nothing is wider than the screen. The test writes docs/img/status-page.png for docs/http.md.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from http_fixtures import GatewayFactory, wait_modems_online
from mosquitto import Broker
from test_mqtt_e2e import mqtt_section
from waiting import async_wait_until

from appliance.store import OutboundRequest, Store
from drivers.simulator import Simulator

playwright_api = pytest.importorskip("playwright.async_api")

pytest_plugins = ["daemon_helpers", "http_fixtures", "mosquitto"]

CHROMIUM = "/usr/bin/chromium"
SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "img" / "status-page.png"
PASSWORD = "correct horse battery"
OUTSIDE = "+4915112345678"
MARKUP = "<img src=x onerror=alert(1)><script>alert(2)</script>"

pytestmark = pytest.mark.skipif(shutil.which("chromium") is None and not Path(CHROMIUM).exists(),
                                reason="Debian's chromium is not installed (bash .ci/setup installs it)")


def seed_history(db: Path, now: float) -> None:
    """A day of one-minute samples as the sampler writes them, so the charts have lines to draw."""
    import math

    with Store(db) as store:
        start = math.floor((now - 24 * 3600) / 60) * 60
        for minute in range(24 * 60):
            at = start + minute * 60
            wave = math.sin(minute / 180)
            store.record_samples(at, [
                ("signal", "sim0", round(-71 + 6 * wave)), ("signal", "sim1", round(-85 + 4 * math.cos(minute / 90))),
                ("queue", "queued", max(0, round(12 * wave))), ("queue", "sending", 1 if minute % 97 < 3 else 0),
            ])


@pytest.mark.timeout(180)  # a browser start and a daemon on a loaded machine
async def test_log_in_see_the_modems_send_a_test_sms_and_see_it_in_the_list(
        gateway_factory: GatewayFactory, mosquitto: Broker, sim: Simulator) -> None:
    gateway = await gateway_factory(http=f'page_password = "{PASSWORD}"', extra=mqtt_section(mosquitto),
                                    start=False)
    gateway.db.parent.mkdir(parents=True, exist_ok=True)
    seed_history(gateway.db, time.time())
    await gateway.start()
    await wait_modems_online(gateway)
    sim.inject(1, "+4917000000001", "Freezer 3: -18 °C, door closed")
    sim.inject(0, "+4917000000002", MARKUP)
    with Store(gateway.db) as store:
        store.enqueue([OutboundRequest(to="+4915199999999", text="Daily report: all sensors fine", source="cli")])

    async def received() -> bool:
        with Store(gateway.db) as store:
            return len(store.inbox()) == 2

    await async_wait_until(received, timeout=15, interval=0.05, what="two SMS received")

    dialogs: list[str] = []
    async with playwright_api.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = await browser.new_page(viewport={"width": 1200, "height": 900})
            page.on("dialog", lambda dialog: dialogs.append(dialog.message))
            expect = playwright_api.expect

            await page.goto(gateway.url + "/")
            await expect(page).to_have_url(gateway.url + "/login")
            await page.fill("#secret", "not the password")
            await page.click("button[type=submit]")
            await expect(page.locator(".flash.error")).to_have_text("Wrong password or token.")
            await page.fill("#secret", PASSWORD)
            await page.click("button[type=submit]")
            await expect(page).to_have_url(gateway.url + "/")

            for modem in ("sim0", "sim1"):
                card = page.locator(f'.modem[data-modem="{modem}"]')
                await expect(card).to_be_visible()
                await expect(card.locator(".state")).to_have_class("ok state")
                await expect(card).to_contain_text("dBm")
            await expect(page.locator("#gateway")).to_contain_text("connected")
            await expect(page.locator("#signal-chart polyline")).to_have_count(2)
            await expect(page.locator("#inbound td.text", has_text="Freezer 3")).to_be_visible()
            await expect(page.locator("#inbound td.text", has_text="<script>")).to_have_text(MARKUP)

            await page.fill("#to", OUTSIDE)
            await page.fill("#text", "Test from the status page")
            await page.click("#send button[type=submit]")
            row = page.locator("#outbound tr", has_text="Test from the status page")
            await expect(row).to_be_visible()
            await expect(row).to_contain_text("http:page")
            await expect(page.locator(".flash.ok")).to_contain_text(f"to {OUTSIDE} is queued")

            async def sent() -> bool:
                return any(record["text"] == "Test from the status page" for record in sim.network.sent)

            await async_wait_until(sent, timeout=15, interval=0.05, what="the test SMS sent")
            await page.reload()
            await expect(row.locator("td.state")).to_have_text("sent")
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            await page.screenshot(path=str(SCREENSHOT), full_page=True)

            # a phone: one column, nothing wider than the screen (the tables scroll inside their box)
            await page.set_viewport_size({"width": 390, "height": 844})
            await page.reload()
            width = await page.evaluate("document.documentElement.scrollWidth")
            assert width <= 390
            first = await page.locator('.modem[data-modem="sim0"]').bounding_box()
            second = await page.locator('.modem[data-modem="sim1"]').bounding_box()
            assert first is not None and second is not None
            assert first["x"] == second["x"] and second["y"] > first["y"]  # stacked, not side by side
        finally:
            await browser.close()
    assert dialogs == []  # the markup in the SMS ran nothing
    with Store(gateway.db) as store:
        sources = [m["source"] for m in store.messages()]
    assert sources.count("http:page") == 1
