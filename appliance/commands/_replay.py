"""``smsgw simulate --replay TRANSCRIPT.json``: one modem answering from a recorded transcript."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

from drivers.simulator.replay import ReplayModem, TranscriptError, load_transcript, serve_transcript


def run_replay(directory: Path, transcript: Path) -> int:
    """Serve ``transcript`` at ``directory/modem0`` until SIGINT/SIGTERM; 2 for a bad transcript."""
    try:
        load_transcript(transcript)
    except TranscriptError as exc:
        print(f"smsgw simulate: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_serve(directory, transcript))
    except OSError as exc:
        print(f"smsgw simulate: {exc}", file=sys.stderr)
        return 2


async def _serve(directory: Path, transcript: Path) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    def ready(modem: ReplayModem) -> None:
        print(f"replay ready: {modem.link} modem={modem.transcript.modem!r} transcript={transcript}", flush=True)

    modem = await serve_transcript(transcript, directory, stop, ready=ready)
    if modem.unrecorded:
        unique = sorted(set(modem.unrecorded))
        print(f"answered with the default (not in the transcript): {', '.join(unique)}", file=sys.stderr)
    return 0
