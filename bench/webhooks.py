"""Webhook delivery rate to a local receiver, and what a webhook costs the commits that write deliveries.

Three kinds of process, each timed on its own:

- ``--receiver PORT``: an aiohttp server on 127.0.0.1 answering 200 to every POST (the receiver);
- ``--one drain``: a fresh store with one webhook and ``--events`` received-SMS events committed
  beforehand; the daemon's sender (``appliance.webhooks.Webhooks``) delivers them all. Figure:
  deliveries/s (each delivery is a POST on a kept-alive connection plus the commit of its outcome,
  a real fsync);
- ``--one enqueue-0`` / ``--one enqueue-1``: ``--messages`` single-message enqueues (one commit each,
  as MQTT requests arrive) with no webhook, then with one webhook taking ``message`` events (each
  commit also writes a delivery row). Figure: enqueues/s and the ratio of the two.

Each is run ``--rounds`` times (interleaved); the medians are printed.

    python bench/webhooks.py [--events 1000] [--messages 1000] [--rounds 3] [--dir DIR] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import aiohttp  # noqa: E402, F401 - imported before the clock starts, as in the running daemon
from harness import wait_until  # noqa: E402

from appliance.config import WebhookConfig  # noqa: E402
from appliance.store import OutboundRequest, Store  # noqa: E402
from appliance.webhooks import Webhooks  # noqa: E402

SECRET = "bench-webhook-secret-0123456789"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def receiver(port: int) -> None:
    from aiohttp import web

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", handle)
    print("ready", flush=True)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def listening(port: int) -> bool:
    """Whether the receiver accepts connections (run_app binds after printing nothing more)."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
    except OSError:
        return False
    return True


def fresh(directory: Path, name: str) -> Path:
    path = directory / f"{name}.db"
    for stale in directory.glob(f"{name}.db*"):
        stale.unlink()
    return path


async def drain(directory: Path, port: int, events: int) -> dict[str, float]:
    hook = WebhookConfig(name="bench", url=f"http://127.0.0.1:{port}/hook", secret=SECRET, events=("received",))
    with Store(fresh(directory, "drain")) as store:
        store.configure_webhooks([(hook.name, hook.events, hook.expire_after)])
        for n in range(events):
            store.add_event("received", {"id": n, "from": "+491700000000", "text": f"reading {n}",
                                         "sent_at": None, "received_at": None, "modem": "sim0", "parts": 1})
        component = Webhooks([hook], store)
        started = time.perf_counter()
        await component.start()
        while store.webhook_stats()["bench"]["pending"]:
            await asyncio.sleep(0.01)
        elapsed = time.perf_counter() - started
        await component.stop()
        assert store.webhook_stats()["bench"]["delivered"] == events
    return {"rate": events / elapsed}


def enqueue(directory: Path, messages: int, webhooks: int) -> dict[str, float]:
    with Store(fresh(directory, f"enqueue-{webhooks}")) as store:
        store.configure_webhooks([(f"hook{n}", ("message",), 86400.0) for n in range(webhooks)])
        started = time.perf_counter()
        for n in range(messages):
            store.enqueue([OutboundRequest(to=f"+49170{n:07d}", text="bench", source="bench")])
        elapsed = time.perf_counter() - started
        assert len(store.deliveries(None, messages + 1)) == messages * webhooks
    return {"rate": messages / elapsed}


def run_one(args: argparse.Namespace, kind: str, port: int | None = None) -> float:
    command = [sys.executable, __file__, "--one", kind, "--events", str(args.events), "--messages",
               str(args.messages), "--dir", str(args.dir)]
    if port is not None:
        command += ["--port", str(port)]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return float(json.loads(out)["rate"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", type=Path)
    parser.add_argument("--json", action="store_true", help="also print the figures as one JSON line, last")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--receiver", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.receiver is not None:
        receiver(args.receiver)
        return
    args.dir = args.dir or Path(tempfile.mkdtemp(prefix="smsgw-webhooks-"))
    if args.one == "drain":
        print(json.dumps(asyncio.run(drain(args.dir, args.port, args.events))))
        return
    if args.one in ("enqueue-0", "enqueue-1"):
        print(json.dumps(enqueue(args.dir, args.messages, int(args.one[-1]))))
        return
    port = free_port()
    server = subprocess.Popen([sys.executable, __file__, "--receiver", str(port)], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        wait_until(lambda: listening(port), timeout=10, interval=0.05, what="the receiver listening")
        rates: dict[str, list[float]] = {"drain": [], "enqueue-0": [], "enqueue-1": []}
        for _ in range(args.rounds):
            rates["drain"].append(run_one(args, "drain", port))
            rates["enqueue-0"].append(run_one(args, "enqueue-0"))
            rates["enqueue-1"].append(run_one(args, "enqueue-1"))
    finally:
        server.terminate()
        server.wait(10)
    medians = {kind: statistics.median(values) for kind, values in rates.items()}
    print(f"deliveries/s to a local receiver ({args.events} events, median of {args.rounds}): "
          f"{medians['drain']:.0f}  (runs: {', '.join(f'{r:.0f}' for r in rates['drain'])})")
    print(f"enqueues/s without a webhook: {medians['enqueue-0']:.0f}; with one: {medians['enqueue-1']:.0f}; "
          f"ratio {medians['enqueue-1'] / medians['enqueue-0']:.2f}")
    if args.json:  # the last line, for bench/run.py
        print(json.dumps({"events": args.events, "messages": args.messages, "rounds": args.rounds,
                          "rates": rates, "medians": medians, "ratio": medians["enqueue-1"] / medians["enqueue-0"]}))


if __name__ == "__main__":
    main()
