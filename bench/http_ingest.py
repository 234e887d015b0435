"""HTTP ingest rate beside MQTT ingest, in the same run: send requests committed per second.

Two ``smsgw run`` daemons, each in its own process with its own store (WAL, synchronous=FULL) and
no modem (only the intake and the commit are measured), and one mosquitto started here on a free
loopback port:

- HTTP: ``POST /api/v1/messages`` from a client process of its own (16 keep-alive connections,
  one request in flight on each); a request counts when its ``202`` arrives, which the API sends only
  after the commit;
- MQTT: ``mosquitto_pub -l -q 1`` publishes the same requests on ``smsgw/send`` (with a
  ``transaction``); a request counts when its answer on ``smsgw/bridge/response/send`` arrives
  (``mosquitto_sub -C N``), which the bridge sends only after the commit.

The rounds alternate between the two; the summary gives the medians and the ratio HTTP / MQTT
(target >= 0.5).

    python bench/http_ingest.py [--count 3000] [--rounds 5] [--concurrency 16] [--dir DIR] [--json]

Run it on the disk the appliance uses (``--dir``): on tmpfs an fsync costs nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from harness import wait_subscribed, wait_until  # noqa: E402
from mosquitto import Broker, free_port  # noqa: E402

from appliance.http.tokens import new_token, token_hash  # noqa: E402
from appliance.store import Store  # noqa: E402


def request(n: int, round_no: int, side: str) -> dict[str, object]:
    return {"to": f"+4917{n % 100000:08d}", "text": f"alert {n}: freezer 3 is at -4 C", "id": f"{side}{round_no}-{n}"}


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def start_daemon(config: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "appliance", "run", "--config", str(config)], cwd=ROOT, env=env(),
                            stdin=subprocess.DEVNULL, stdout=log.open("wb"), stderr=subprocess.STDOUT)


def wait_for(log: Path, marker: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    def logged() -> bool:
        if marker in log.read_text(errors="replace"):
            return True
        if proc.poll() is not None:
            raise RuntimeError(f"{log}: no {marker!r}:\n{log.read_text(errors='replace')[-2000:]}")
        return False

    wait_until(logged, timeout=timeout, interval=0.05, what=f"{marker!r} in {log}")


# --- the HTTP client (its own process) ------------------------------------------------------


async def client(url: str, token: str, count: int, concurrency: int, round_no: int) -> None:
    """``count`` POSTs on ``concurrency`` keep-alive connections, one request in flight on each; a lean
    client (prepared request bytes, responses read by Content-Length) so that the figure is the server's."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    requests = []
    for n in range(count):
        body = json.dumps(request(n, round_no, "h")).encode()
        requests.append(b"POST /api/v1/messages HTTP/1.1\r\nHost: " + host.encode() + b"\r\nAuthorization: Bearer "
                        + token.encode() + b"\r\nContent-Type: application/json\r\nContent-Length: "
                        + str(len(body)).encode() + b"\r\n\r\n" + body)
    statuses: dict[int, int] = {}
    next_index = 0
    connections = [await asyncio.open_connection(host, int(port)) for _ in range(concurrency)]

    async def worker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal next_index
        while next_index < count:
            data = requests[next_index]
            next_index += 1
            writer.write(data)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            statuses[status] = statuses.get(status, 0) + 1

    start = time.perf_counter()
    await asyncio.gather(*(worker(reader, writer) for reader, writer in connections))
    elapsed = time.perf_counter() - start
    for _, writer in connections:
        writer.close()
    print(json.dumps({"elapsed": elapsed, "statuses": statuses}))


def http_round(url: str, token: str, count: int, concurrency: int, round_no: int) -> float:
    done = subprocess.run([sys.executable, __file__, "--client", url, token, str(count), str(concurrency),
                           str(round_no)], capture_output=True, text=True, cwd=ROOT, env=env(), timeout=600)
    if done.returncode:
        raise RuntimeError(f"HTTP client failed: {done.stderr}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if result["statuses"] != {"202": count}:
        raise RuntimeError(f"HTTP answers other than 202: {result['statuses']}")
    return count / float(result["elapsed"])


# --- the MQTT side ---------------------------------------------------------------------------


def mqtt_round(broker: Broker, workdir: Path, count: int, round_no: int) -> float:
    data = workdir / f"requests-{round_no}.jsonl"
    with data.open("w") as out:
        for n in range(count):
            out.write(json.dumps({**request(n, round_no, "m"), "transaction": f"m{round_no}-{n}"}) + "\n")
    answers = workdir / f"answers-{round_no}.txt"
    ready = f"bench/ready/{round_no}"
    sub = subprocess.Popen(["mosquitto_sub", "-h", broker.host, "-p", str(broker.port), "-q", "1", "-C",
                            str(count + 1), "-t", "smsgw/bridge/response/send", "-t", ready],
                           stdout=answers.open("wb"), stderr=subprocess.PIPE)
    wait_subscribed(broker, ready, answers)
    start = time.perf_counter()
    pub = subprocess.Popen(["mosquitto_pub", "-h", broker.host, "-p", str(broker.port), "-q", "1", "-l",
                            "-t", "smsgw/send"], stdin=data.open("rb"), stderr=subprocess.PIPE)
    sub.wait(timeout=600)
    elapsed = time.perf_counter() - start
    pub.wait(timeout=60)
    lines = answers.read_text().splitlines()[1:]
    bad = [line for line in lines if json.loads(line).get("status") != "ok"]
    if len(lines) != count or bad:
        raise RuntimeError(f"MQTT answers: {len(lines)} of {count}, {len(bad)} not ok: {bad[:3]}")
    return count / elapsed


def run(args: argparse.Namespace) -> None:
    workdir = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="smsgw-http-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    broker = Broker(workdir / "broker", persistence=False).start()
    token, port = new_token(), free_port()
    common = '[numbers]\ndefault_country = "DE"\n'
    http_config = workdir / "http.toml"
    http_config.write_text(f'[store]\npath = "{workdir / "http.db"}"\n{common}\n[http]\nlisten = "127.0.0.1:{port}"\n'
                           f'token_rate = 1000000\ntoken_burst = 1000000\n[[http.tokens]]\nname = "bench"\n'
                           f'token_sha256 = "{token_hash(token)}"\nscopes = ["send"]\n')
    mqtt_config = workdir / "mqtt.toml"
    mqtt_config.write_text(f'[store]\npath = "{workdir / "mqtt.db"}"\n{common}\n[mqtt]\nhost = "{broker.host}"\n'
                           f'port = {broker.port}\nclient_id = "bench-gw"\ndiscovery = false\n')
    http_daemon = start_daemon(http_config, workdir / "http.log")
    mqtt_daemon = start_daemon(mqtt_config, workdir / "mqtt.log")
    try:
        wait_for(workdir / "http.log", "HTTP API on", http_daemon)
        wait_for(workdir / "mqtt.log", "smsgw running", mqtt_daemon)
        wait_for(workdir / "mqtt.log", "MQTT connected", mqtt_daemon)
        url = f"http://127.0.0.1:{port}"
        print(f"{args.count} requests per round; HTTP keep-alive, {args.concurrency} at once; MQTT QoS 1; "
              f"stores in {workdir}")
        print(f"{'round':>5}  {'MQTT committed /s':>17}  {'HTTP committed /s':>17}  {'ratio':>5}")
        results: list[tuple[float, float]] = []
        for round_no in range(args.rounds):
            mqtt_rate = mqtt_round(broker, workdir, args.count, round_no)
            http_rate = http_round(url, token, args.count, args.concurrency, round_no)
            results.append((mqtt_rate, http_rate))
            print(f"{round_no + 1:>5}  {mqtt_rate:>17,.0f}  {http_rate:>17,.0f}  {http_rate / mqtt_rate:>5.2f}")
        mqtt_median = statistics.median(r[0] for r in results)
        http_median = statistics.median(r[1] for r in results)
        ratios = [r[1] / r[0] for r in results]
        print(f"median: MQTT {mqtt_median:,.0f}/s, HTTP {http_median:,.0f}/s committed, ratio "
              f"{http_median / mqtt_median:.2f} (median of per-round ratios {statistics.median(ratios):.2f}; "
              "target >= 0.5)")
    finally:
        for proc in (http_daemon, mqtt_daemon):
            proc.terminate()
            proc.wait(timeout=30)
        broker.kill()
    committed = {}
    for name in ("http", "mqtt"):
        with Store(workdir / f"{name}.db", read_only=True) as store:
            committed[name] = sum(store.stats()["outbox"].values())
            print(f"{name}: {committed[name]} rows committed of {args.count * args.rounds}")
    if args.json:  # the last line, for bench/run.py
        print(json.dumps({"count": args.count, "rounds": args.rounds, "concurrency": args.concurrency,
                          "mqtt": [r[0] for r in results], "http": [r[1] for r in results],
                          "mqtt_median": mqtt_median, "http_median": http_median,
                          "ratio": http_median / mqtt_median, "ratio_of_rounds": statistics.median(ratios),
                          "committed": committed}))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        url, token, count, concurrency, round_no = sys.argv[2:7]
        asyncio.run(client(url, token, int(count), int(concurrency), int(round_no)))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--dir", help="directory for the broker and the stores (default: a new temp dir)")
    parser.add_argument("--json", action="store_true", help="also print the figures as one JSON line, last")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
