"""The status page against the store's size: what ``GET /`` costs with a long history.

A fresh store file gets ``--messages`` finished messages over 30 days (as ``bench/stats.py`` builds
them: a part, a published event each, a received message per ten) and 30 days of one-minute history
samples (two modems' signal, two queue states: what the sampler writes in the default retention).
Then, in this process and interleaved: the page's store reads (``page_routes.read_store``, on a
read-only store as the route runs them) and the HTML (``page.status_page`` from those rows). Then
``GET /`` end to end: ``smsgw run`` with ``[http]`` on that store (no modem), logged in with the page
password, from a client in this process (one request at a time). Medians in ms.

    python bench/status_page.py [--messages 100000] [--rounds 21] [--dir DIR] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from http_ingest import start_daemon, wait_for  # noqa: E402
from mosquitto import free_port  # noqa: E402
from stats import build  # noqa: E402

from appliance import __version__  # noqa: E402
from appliance.http import views  # noqa: E402
from appliance.http.page import PageData, status_page  # noqa: E402
from appliance.http.page_routes import QUEUE_STATES, WINDOW, read_store  # noqa: E402
from appliance.store import STATES, Store  # noqa: E402

DAY = 86400.0
MODEMS = ["sim0", "sim1"]
PASSWORD = "bench status page"


def add_history(path: Path, now: float, days: float = 30.0) -> int:
    """One-minute samples of two modems' signal and two queue states over ``days``: the row count."""
    minutes = int(days * DAY / 60)
    start = (now // 60) * 60 - minutes * 60
    with Store(path) as store:
        conn = store._conn  # the bench writes beneath the store's methods, in one transaction
        conn.execute("BEGIN")
        for kind, key, expression in (("signal", "sim0", "-70 - (i % 13)"), ("signal", "sim1", "-85 + (i % 7)"),
                                      ("queue", "queued", "(i % 40)"), ("queue", "sending", "(i % 3 = 0)")):
            conn.execute("WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < ?) "
                         f"INSERT INTO history_sample (at, kind, key, value) SELECT ? + i * 60, ?, ?, {expression} "
                         "FROM n", (minutes, start, kind, key))
        conn.execute("COMMIT")
        return int(conn.execute("SELECT COUNT(*) FROM history_sample").fetchone()[0])


def render(stored: dict[str, Any], now: float) -> str:
    history = stored["history"]
    data = PageData(
        version=__version__, hostname="bench", uptime=3600.0, mqtt=True,
        modems=[views.modem({"id": m, "state": "online", "healthy": True}) for m in MODEMS],
        depths={state: stored["stats"]["outbox"].get(state, 0) for state in STATES},
        outbound=[views.message(row) for row in stored["outbound"]],
        inbound=[views.received(row) for row in stored["inbound"]],
        signal={m: history.get(("signal", m), []) for m in MODEMS},
        queue={state: history.get(("queue", state), []) for state in QUEUE_STATES}, now=now, window=WINDOW)
    return status_page(data, who="page", csrf="x" * 43, can_send=True)


async def end_to_end(path: Path, directory: Path, rounds: int) -> tuple[list[float], int]:
    import aiohttp

    port = free_port()
    config = directory / "page.toml"
    # retention_days = 0: nothing is pruned while the page is timed
    config.write_text(f'[store]\npath = "{path}"\nretention_days = 0\n\n[http]\nlisten = "127.0.0.1:{port}"\n'
                      f'page_password = "{PASSWORD}"\n')
    log = directory / "page.log"
    daemon = start_daemon(config, log)
    times: list[float] = []
    size = 0
    try:
        wait_for(log, "HTTP API on", daemon, timeout=120)
        url = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
            async with session.get(url + "/login") as response:
                csrf = re.search(r'name="csrf" value="([^"]+)"', await response.text())
            assert csrf is not None
            async with session.post(url + "/login", data={"csrf": csrf.group(1), "secret": PASSWORD}) as response:
                assert response.status == 200 and "logged in: page" in await response.text()
            for _ in range(rounds):
                start = time.perf_counter()
                async with session.get(url + "/") as response:
                    body = await response.read()
                    assert response.status == 200
                times.append((time.perf_counter() - start) * 1000)
                size = len(body)
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)
    return times, size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--dir", type=Path)
    parser.add_argument("--json", action="store_true", help="also print the figures as one JSON line, last")
    args = parser.parse_args()
    directory = args.dir or Path(tempfile.mkdtemp(prefix="smsgw-page-bench-"))
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "page.db"
    now = time.time()
    build(path, args.messages, now)
    samples = add_history(path, now)
    reads: list[float] = []
    renders: list[float] = []
    page = ""
    for _ in range(args.rounds):
        start = time.perf_counter()
        with Store(path, read_only=True) as store:
            stored = read_store(store, now, MODEMS)
        reads.append((time.perf_counter() - start) * 1000)
        start = time.perf_counter()
        page = render(stored, now)
        renders.append((time.perf_counter() - start) * 1000)
    http, size = asyncio.run(end_to_end(path, directory, args.rounds))
    result = {"messages": args.messages, "samples": samples, "rounds": args.rounds,
              "read_ms": statistics.median(reads), "render_ms": statistics.median(renders),
              "get_ms": statistics.median(http), "html_bytes": len(page.encode()), "response_bytes": size}
    print(f"{args.messages:,} messages and {samples:,} history samples (30 days, 2 modems); medians of {args.rounds}:")
    print(f"  store reads (read-only store, as the route): {result['read_ms']:.1f} ms")
    print(f"  HTML from those rows: {result['render_ms']:.1f} ms ({result['html_bytes']:,} bytes)")
    print(f"  GET / end to end (smsgw run, loopback): {result['get_ms']:.1f} ms")
    if args.json:
        print(json.dumps(result))
    if not args.dir:
        shutil.rmtree(directory, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
