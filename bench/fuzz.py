"""Fuzz what reads untrusted bytes: the modem-facing parsers, the PDU decoder, the AT framing, the
path from a SIM listing to the store, and the MQTT request reader. Prints inputs, crashes, time.

    python bench/fuzz.py --inputs 100000

The inputs are shared out over the targets below. Each target runs in its own process: with atheris
(coverage-guided libFuzzer, ``pip install atheris``; x86_64 wheels) where it imports, with
hypothesis (``st.binary()``) otherwise; ``--engine`` chooses. A *crash* is any exception other than
the one the target documents (``ParseError``, ``PduError``, ``PayloadError``/``IntakeError``), or a
broken invariant (the framing cuts the same bytes into different lines when they arrive in other
chunks; text that reaches SQLite is not valid Unicode); each distinct one is printed with an input
that shows it, as hex (replay it with ``--replay TARGET HEX``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

#: Seed inputs per target (real modem replies and PDUs: tests/test_pdu_properties.py, tests/test_parsers.py).
PDUS = [
    "07911326040000F0040B911346610089F60000208062917314480CC8F71D14969741F977FD07",
    "0791447758100650040DD0F334FC1CA6970100008080312170224008D4F29CDE0EA7D9",
    "0791448720003023440C91446742087377000480601111138040380B0504000000000003B90303000102030405"
    "060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F202122232425262728292A2B",
    "07914346466554F601000B914316565811F9000806304253F68449",
    "0006D60B911326880736F4111011719551401110117195714000",
    "0006230E9126983575169498610103409544C26101034095448200",
]
SEEDS: dict[str, list[bytes]] = {
    "parsers": [b'+CSQ: 20,99', b'+CREG: 2,1,"1A2B","00C3F1",7', b'+COPS: 0,0,"Telekom.de",7',
                b'+CPMS: "SM",3,30,"SM",3,30,"SM",3,30', b'+CUSD: 0,"Guthaben 5,00 EUR",15',
                b"+CMGL: 1,0,,24\n" + PDUS[0].encode(), b'+CMTI: "SM",3', b"+CPIN: SIM PIN"],
    "final": [b"OK", b"ERROR", b"+CMS ERROR: 311", b"+CME ERROR: SIM PIN required", b"+CME ERROR: 10"],
    "pdu": [bytes.fromhex(p) for p in PDUS] + [p.encode() for p in PDUS],
    "framing": [b"\r\n+CSQ: 20,99\r\n\r\nOK\r\n", b"AT+CMGS=23\r\r\n> ", b"\r\n> 0011000B91\x1a\r\n+CMGS: 7\r\n"],
    "sim-to-store": [b"+CMGL: 1,0,,24\n" + p.encode() for p in PDUS]
    + [b'+CMGL: 2,"REC UNREAD","+4917012345",,"24/01/02,10:11:12+04"\nhello'],
    "mqtt-send": [b'{"to": "+4915112345678", "text": "hi", "id": "a1", "priority": "high"}',
                  b'[{"to": ["+4915112345678", "0170 1234567"], "text": "x", "valid_for": 60}]'],
    "mqtt-send-number": [b"+4915112345678\x00hello", b"004915112345678\x00\xf0\x9f\x9a\xb0"],
}


def _targets() -> dict[str, Callable[[bytes], None]]:
    """Each target takes one input; it raises only for a crash (an undocumented exception)."""
    from appliance.config import parse_config
    from appliance.intake import IntakeError, IntakePolicy, SendRequest, prepare, request_from_json
    from appliance.payload import PayloadError, decode_text, dump_json, load_json
    from appliance.store import Store
    from drivers import parsers
    from drivers.errors import AtError, error_from_final
    from drivers.framing import AtFramer, Line
    from drivers.modem import Modem
    from drivers.parsers import ParseError
    from drivers.pdu import PduError, SmsDeliver, decode, to_json

    config = parse_config({"store": {"path": "/nonexistent/smsgw.db"}, "numbers": {"default_country": "DE"},
                           "limits": {"max_parts": 10}}, Path("smsgw.toml"))
    store_dir = Path(tempfile.mkdtemp(prefix="smsgw-fuzz-"))
    stores: list[Store] = []
    received = [0]

    def store() -> Store:
        if not stores or received[0] >= 2000:  # a fresh file now and then keeps each commit small
            for old in stores:
                old.close()
            stores[:] = [Store(store_dir / f"fuzz{time.monotonic_ns()}.db")]
            stores[0]._conn.execute("PRAGMA synchronous = OFF")  # the bench reads beneath the store
            received[0] = 0
        return stores[0]

    def lines_of(data: bytes) -> list[str]:
        # what the framing hands on: UTF-8 with replacement, split into lines, stripped, none empty
        return [line.strip() for line in data.decode("utf-8", "replace").replace("\r", "\n").split("\n")
                if line.strip()][:12]

    def fuzz_parsers(data: bytes) -> None:
        lines = lines_of(data)
        line = lines[0] if lines else ""
        dcs = data[0] if data else None
        calls: list[Callable[[], Any]] = [
            lambda: parsers.split_fields(line), lambda: parsers.parse_csq(lines),
            lambda: parsers.parse_creg(lines), lambda: parsers.parse_creg_urc(line),
            lambda: parsers.parse_cops(lines), lambda: parsers.parse_cpin(lines),
            lambda: parsers.parse_csca(lines), lambda: parsers.parse_cpms(lines),
            lambda: parsers.parse_cmgl(lines), lambda: parsers.parse_cmgr(lines),
            lambda: parsers.parse_cmgs(lines), lambda: parsers.parse_cmti(line),
            lambda: parsers.parse_cusd(line), lambda: parsers.decode_ussd_text(line, dcs),
            lambda: parsers.access_technology(dcs),
            lambda: parsers.text_mode_deliver(parsers.TextModeMessage(line or None, line, "\n".join(lines))),
        ]
        for call in calls:
            try:
                call()
            except ParseError:
                pass

    def fuzz_final(data: bytes) -> None:
        for line in lines_of(data) or [""]:
            error = error_from_final(line, "AT+CMGS=23", [])
            assert isinstance(error, AtError) and isinstance(str(error), str)

    def fuzz_pdu(data: bytes) -> None:
        for pdu in (data, data.hex(), data.decode("latin-1")):
            for with_smsc in (True, False):
                try:
                    message = decode(pdu, with_smsc=with_smsc)
                except PduError as exc:
                    assert str(exc)
                    continue
                dump_json(to_json(message)).encode("utf-8")  # what `smsgw pdu decode --json` prints

    def fuzz_framing(data: bytes) -> None:
        cut = data[0] if data else 1
        whole = AtFramer(max_line=64).feed(data)
        chunked = AtFramer(max_line=64)
        pieces: list[Any] = []
        step = max(cut % 9, 1)
        for start in range(0, len(data), step):
            pieces.extend(chunked.feed(data[start:start + step]))
        assert pieces == whole, f"{whole!r} framed as {pieces!r} in chunks of {step}"
        for item in whole:
            if isinstance(item, Line):
                assert item.text == item.text.strip() and "\x00" not in item.text
                item.text.encode("utf-8")

    def fuzz_sim_to_store(data: bytes) -> None:
        # AT+CMGL reply lines -> entries -> decoded as the modem does -> committed as the inbox does
        try:
            entries = parsers.parse_cmgl(lines_of(data))
        except ParseError:
            return
        target = store()
        for entry in entries:
            message, error = Modem._decode_entry(entry)
            deliver = message if isinstance(message, SmsDeliver) else None
            if message is not None and deliver is None:
                continue  # a status report or submit in the listing: not an incoming SMS
            target.add_incoming_part("sim0", entry.pdu, deliver, error, 1_700_000_000.0, entry.index)
            received[0] += 1
        events = target.events_pending(limit=50)
        for event in events:  # what the bridge publishes
            dump_json(event.payload).encode("utf-8")
        target.events_done([event.id for event in events])

    policy = IntakePolicy.from_config(config)

    def read_request(request: SendRequest) -> None:
        prepared = prepare(request, policy, 1_700_000_000.0)
        for request in prepared.requests:  # what reaches SQLite and the SMS codec is real text
            request.text.encode("utf-8")
            request.to.encode("utf-8")
            if request.client_key is not None:
                request.client_key.encode("utf-8")

    def fuzz_mqtt_send(data: bytes) -> None:
        try:
            read_request(request_from_json(load_json(decode_text(data), text_only=False), source="mqtt"))
        except (PayloadError, IntakeError):
            pass

    def fuzz_mqtt_send_number(data: bytes) -> None:
        number, _, payload = data.partition(b"\x00")
        try:
            to = number.decode("utf-8")  # paho hands the topic on as text
        except UnicodeDecodeError:
            return
        try:
            read_request(SendRequest(to=(to,), text=decode_text(payload), source="mqtt"))
        except (PayloadError, IntakeError):
            pass

    return {"parsers": fuzz_parsers, "final": fuzz_final, "pdu": fuzz_pdu, "framing": fuzz_framing,
            "sim-to-store": fuzz_sim_to_store, "mqtt-send": fuzz_mqtt_send,
            "mqtt-send-number": fuzz_mqtt_send_number}


TARGETS = list(SEEDS)


class Recorder:
    """Counts inputs; keeps the first input of each distinct crash (exception type and place)."""

    def __init__(self, target: Callable[[bytes], None]) -> None:
        self.target = target
        self.inputs = 0
        self.crashes: dict[str, dict[str, str]] = {}

    def __call__(self, data: bytes) -> None:
        self.inputs += 1
        try:
            self.target(data)
        except Exception as exc:  # noqa: BLE001 - every undocumented exception is a finding
            frame = traceback.extract_tb(exc.__traceback__)[-1]
            key = f"{type(exc).__name__} at {Path(frame.filename).name}:{frame.lineno}"
            if key not in self.crashes:
                self.crashes[key] = {"error": f"{type(exc).__name__}: {str(exc)[:300]}", "input": data.hex(),
                                     "traceback": "".join(traceback.format_exception(exc))[-2000:]}


def _worker_atheris(name: str, runs: int, out: Path) -> None:
    import atheris

    with atheris.instrument_imports(include=["drivers", "appliance"]):
        targets = _targets()
    recorder = Recorder(targets[name])
    corpus = Path(tempfile.mkdtemp(prefix=f"smsgw-fuzz-{name}-"))
    for index, seed in enumerate(SEEDS[name]):
        (corpus / f"seed{index}").write_bytes(seed)
    started = time.monotonic()

    def write() -> None:
        out.write_text(json.dumps({"inputs": recorder.inputs, "seconds": time.monotonic() - started,
                                   "crashes": recorder.crashes, "engine": "atheris"}))

    def one_input(data: bytes) -> None:
        recorder(data)
        if recorder.inputs % 1000 == 0 or recorder.inputs >= runs:
            write()

    import atexit
    atexit.register(write)
    atheris.Setup([sys.argv[0], f"-runs={runs}", "-max_len=600", "-rss_limit_mb=1024", str(corpus)], one_input)
    atheris.Fuzz()  # exits the process when the runs are done


def _worker_hypothesis(name: str, runs: int, out: Path) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    recorder = Recorder(_targets()[name])
    started = time.monotonic()
    seeds = st.sampled_from(SEEDS[name])
    mutated = st.tuples(seeds, st.binary(max_size=40), st.integers(0, 600)).map(lambda s: s[0][:s[2]] + s[1])

    @settings(max_examples=runs, deadline=None, database=None, derandomize=False,
              suppress_health_check=list(HealthCheck))
    @given(st.one_of(st.binary(max_size=600), mutated))
    def run(data: bytes) -> None:
        recorder(data)

    run()
    out.write_text(json.dumps({"inputs": recorder.inputs, "seconds": time.monotonic() - started,
                               "crashes": recorder.crashes, "engine": "hypothesis"}))


def _engine(choice: str) -> str:
    if choice != "auto":
        return choice
    try:
        import atheris  # noqa: F401
    except ImportError:
        return "hypothesis"
    return "atheris"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=100_000, help="inputs over all targets (default 100000)")
    parser.add_argument("--engine", choices=("auto", "atheris", "hypothesis"), default="auto")
    parser.add_argument("--targets", default=",".join(TARGETS), help=f"comma-separated, of {', '.join(TARGETS)}")
    parser.add_argument("--replay", nargs=2, metavar=("TARGET", "HEX"), help="run one input and show what it raises")
    parser.add_argument("--worker", nargs=3, metavar=("TARGET", "RUNS", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.replay:
        name, data = args.replay
        _targets()[name](bytes.fromhex(data))
        print("no crash")
        return 0
    engine = _engine(args.engine)
    if args.worker:
        name, runs, out = args.worker
        (_worker_atheris if engine == "atheris" else _worker_hypothesis)(name, int(runs), Path(out))
        return 0
    names = [name.strip() for name in args.targets.split(",") if name.strip()]
    unknown = sorted(set(names) - set(TARGETS))
    if unknown:
        parser.error(f"unknown target(s) {', '.join(unknown)}: choose from {', '.join(TARGETS)}")
    share = -(-args.inputs // len(names))
    total_inputs = total_crashes = 0
    total_seconds = 0.0
    print(f"engine {engine}, {share} inputs per target\n")
    print("| target | inputs | crashes | seconds |\n|---|---:|---:|---:|")
    findings: list[tuple[str, str, dict[str, str]]] = []
    for name in names:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "result.json"
            started = time.monotonic()
            proc = subprocess.run([sys.executable, __file__, "--engine", engine, "--worker", name, str(share), str(out)],
                                  cwd=ROOT, capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": "0"})
            seconds = time.monotonic() - started
            if not out.exists():
                print(f"| {name} | worker failed ({proc.returncode}) | | {seconds:.0f} |")
                print(proc.stderr[-3000:], file=sys.stderr)
                total_crashes += 1
                continue
            result = json.loads(out.read_text())
        crashes = result["crashes"]
        findings += [(name, key, crash) for key, crash in crashes.items()]
        total_inputs += result["inputs"]
        total_crashes += len(crashes)
        total_seconds += seconds
        print(f"| {name} | {result['inputs']} | {len(crashes)} | {seconds:.0f} |", flush=True)
    print(f"| **all** | **{total_inputs}** | **{total_crashes}** | **{total_seconds:.0f}** |")
    for name, key, crash in findings:
        print(f"\n## {name}: {key}\n{crash['error']}\ninput: {crash['input']}\n{crash['traceback']}")
    return 1 if total_crashes else 0


if __name__ == "__main__":
    sys.exit(main())
