"""What a person at a terminal notices: the AT console, pipes, exit statuses, log times, completion."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from third_party_fixtures import run_simulator

from drivers.pdu import encode_submit

REPO = Path(__file__).resolve().parent.parent
SMSGW = [sys.executable, "-m", "appliance"]


class Pty:
    """A program on a real pseudo-terminal, read as a person would see it."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: the terminal is its stdin, stdout and stderr
            os.execvpe(argv[0], argv, env)
        self.seen = b""

    def expect(self, text: str, timeout: float = 15.0) -> str:
        """Read until ``text`` has appeared after what earlier calls consumed; return what came."""
        wanted = text.encode()
        deadline = time.monotonic() + timeout
        while wanted not in self.seen:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out waiting for {text!r}; the terminal shows {self.seen!r}")
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                try:
                    chunk = os.read(self.fd, 4096)
                except OSError:  # EIO: the program exited
                    chunk = b""
                if not chunk:
                    raise AssertionError(f"the program ended before {text!r}; it showed {self.seen!r}")
                self.seen += chunk
        head, _, self.seen = self.seen.partition(wanted)
        return (head + wanted).decode(errors="replace")

    def type(self, keys: str) -> None:
        os.write(self.fd, keys.encode())

    def close(self) -> int:
        try:
            os.kill(self.pid, 9)
        except ProcessLookupError:
            pass
        _, status = os.waitpid(self.pid, 0)
        os.close(self.fd)
        return status


def test_at_console_on_a_terminal_has_banner_prompt_history_and_asks_for_the_pdu(tmp_path):
    with run_simulator(tmp_path / "sim", profile="sim800") as sim:
        env = {**os.environ, "HOME": str(tmp_path), "TERM": "xterm", "PYTHONPATH": str(REPO)}
        console = Pty([*SMSGW, "at", sim.port(0)], env)
        try:
            banner = console.expect("AT> ")
            assert "AT console on " + sim.port(0) in banner and "Ctrl-D quits" in banner
            console.type("ATI\r")
            reply = console.expect("AT> ")
            assert "SIM800" in reply and "OK" in reply
            console.type("\x1b[A\r")  # Up: readline's history brings ATI back
            again = console.expect("AT> ")
            assert "ATI" in again and "SIM800" in again and "OK" in again
            part = encode_submit("+4915112345678", "typed in a console")[0]
            console.type(f"AT+CMGS={part.tpdu_length}\r")
            console.expect("PDU> ")  # asked for visibly, before anything is sent
            console.type(part.pdu + "\r")
            sent = console.expect("AT> ")
            assert "+CMGS:" in sent and "OK" in sent
            console.type("\x04")  # Ctrl-D
            wait_for_exit = console.pid
            _, status = os.waitpid(wait_for_exit, 0)
            console.pid = 0
            assert os.waitstatus_to_exitcode(status) == 0
        finally:
            if console.pid:
                console.close()
            else:
                os.close(console.fd)
        network = sim.wait_sent("+4915112345678")
        assert network["text"] == "typed in a console"
    assert "ATI" in (tmp_path / ".smsgw_at_history").read_text()


def write_config(tmp_path: Path, port: str = "/dev/nonexistent-modem") -> Path:
    config = tmp_path / "smsgw.toml"
    config.write_text(f'[store]\npath = "{tmp_path / "smsgw.db"}"\n\n[[modems]]\nid = "sim0"\nport = "{port}"\n')
    return config


def test_doctor_into_head_prints_no_traceback(tmp_path):
    config = write_config(tmp_path)
    piped = subprocess.run(["bash", "-c", f'{sys.executable} -m appliance doctor --config "$1" | head -1', "x",
                            str(config)], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert len(piped.stdout.splitlines()) == 1
    assert "Traceback" not in piped.stderr and "BrokenPipe" not in piped.stderr, piped.stderr
    # and when the reader is gone before the first line (what `head` does to a long report)
    read, write = os.pipe()
    os.close(read)
    gone = subprocess.run([*SMSGW, "doctor", "--config", str(config)], stdout=write, stderr=subprocess.PIPE,
                          text=True, timeout=60, cwd=REPO)
    os.close(write)
    assert "Traceback" not in gone.stderr and "BrokenPipe" not in gone.stderr, gone.stderr
    assert gone.returncode == 141


@pytest.mark.parametrize(("argv", "message"), [
    (["setup", "--non-interactive", "--config", "{existing}", "--port", "/dev/ttyUSB0"], "smsgw setup: "),
    (["at", "/dev/nonexistent-modem", "ATI"], "smsgw at: /dev/nonexistent-modem: no such port"),
    (["inbox", "--config", "{config}"], "smsgw inbox: no database at"),
    (["status", "--config", "{config}"], "smsgw status: no database at"),
    (["outbox", "--config", "{config}"], "smsgw outbox: no database at"),
    (["run", "--config", "{missing}"], "smsgw run: "),
    (["send", "--config", "{missing}", "+4915112345678", "hi"], "smsgw send: "),
    (["config", "check", "{missing}"], "smsgw config check: "),
    (["send", "--config", "{config}", "not-a-number", "hi"], "smsgw send: "),
])
def test_bad_input_exits_2_and_names_the_command(tmp_path, argv, message):
    config = write_config(tmp_path)
    existing = tmp_path / "existing.toml"
    existing.write_text("# mine\n")
    names = {"config": str(config), "existing": str(existing), "missing": str(tmp_path / "nope.toml")}
    result = subprocess.run([*SMSGW, *(a.format(**names) for a in argv)], capture_output=True, text=True,
                            timeout=60, cwd=REPO)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(message), result.stderr
    assert "Traceback" not in result.stderr


LOG_LINE = (
    "import logging, sys; from appliance.commands.run import setup_logging; setup_logging('info'); "
    "logging.getLogger('appliance.daemon').info('started')"
)


def test_log_lines_carry_a_time_unless_journald_stamps_them():
    env = {k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"}
    plain = subprocess.run([sys.executable, "-c", LOG_LINE], capture_output=True, text=True, env=env,
                           timeout=30, cwd=REPO)
    stamp, level_and_rest = plain.stderr.strip()[:23], plain.stderr.strip()[24:]
    assert time.strptime(stamp[:19], "%Y-%m-%d %H:%M:%S") and stamp[19] == "." and stamp[20:].isdigit()
    assert level_and_rest == "info daemon: started"
    journal = subprocess.run([sys.executable, "-c", LOG_LINE], capture_output=True, text=True,
                             env={**env, "JOURNAL_STREAM": "8:12345"}, timeout=30, cwd=REPO)
    assert journal.stderr.strip() == "<6>daemon: started"


def complete(words: list[str], script: str) -> list[str]:
    """What bash's completion offers after ``words`` (the last one being completed)."""
    line = " ".join(f"'{w}'" for w in words)
    program = (f'source "$1"\ncomplete -p smsgw\n'
               f'COMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; COMP_LINE="{line}"; COMP_POINT=${{#COMP_LINE}}\n'
               f'_smsgw smsgw "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"\n'
               'printf "%s\\n" "${COMPREPLY[@]}"\n')
    result = subprocess.run(["bash", "-c", program, "bash", script], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    first, *offered = result.stdout.splitlines()
    assert first.startswith("complete ") and first.endswith(" smsgw") and "-F _smsgw" in first
    return offered


def test_bash_completion_offers_commands_options_and_values(tmp_path):
    script = tmp_path / "smsgw.bash"
    result = subprocess.run([*SMSGW, "completion", "bash"], capture_output=True, text=True, timeout=30, cwd=REPO)
    assert result.returncode == 0, result.stderr
    script.write_text(result.stdout)
    assert set(complete(["smsgw", "s"], str(script))) == {"send", "setup", "simulate", "status"}
    assert complete(["smsgw", "pdu", ""], str(script)) == ["decode", "encode"]
    assert "--no-smsc" in complete(["smsgw", "pdu", "decode", "--"], str(script))
    assert set(complete(["smsgw", "send", "--priority", ""], str(script))) == {"critical", "high", "normal", "low"}
    assert complete(["smsgw", "status", "--config", "x.toml", "--j"], str(script)) == ["--json"]
    (tmp_path / "smsgw.toml").write_text("")
    assert complete(["smsgw", "status", "--config", str(tmp_path / "smsgw.t")], str(script)) == \
        [str(tmp_path / "smsgw.toml")]

