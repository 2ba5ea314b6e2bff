"""Run a long build command and show what it is doing: `build_progress.py LOG -- COMMAND ...`.

pip alone prints "still running..." once a minute through the ~10-minute llama-cpp-python compile. Run
with `pip -v`, the build prints its own progress (CMake's `[ 45%] Building ...`, Ninja's `[12/300] ...`);
this keeps every line in LOG and shows, on one line per step, the elapsed time and the build's progress.
On failure it prints the last lines of LOG and exits with the command's status. Standard library only:
the Makefile runs it before anything is installed.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections import deque
from pathlib import Path

# "[ 45%] Building C object ..." (Make) or "[12/300] /usr/bin/g++ ... -c SOURCE" (Ninja, verbose)
PROGRESS = re.compile(r"^\s*\[\s*(\d+%|\d+/\d+)\]\s*(.*)$")
SOURCE = re.compile(r"\s-c\s+(\S+)")
STEPS = ("Collecting", "Building wheel", "Created wheel", "Successfully")
TAIL_LINES = 40


def summary(line: str, elapsed: float) -> str | None:
    """The line to show for one line of build output, or None to keep it in the log only."""
    clock = f"{int(elapsed // 60):2d}m{int(elapsed % 60):02d}s"
    match = PROGRESS.match(line)
    if match:
        source = SOURCE.search(match.group(2))
        what = f"compiling {source.group(1).split('/vendor/')[-1]}" if source else match.group(2)
        return f"{clock}  [{match.group(1)}] {what[:90]}"
    if line.strip().startswith(STEPS):
        return f"{clock}  {line.strip()[:100]}"
    return None


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: build_progress.py LOG -- COMMAND ...", file=sys.stderr)
        return 2
    log_path, command = Path(argv[0]), argv[2:]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started, tail = time.monotonic(), deque(maxlen=TAIL_LINES)
    print(f"building (full log: {log_path}); this takes about 10 minutes on 2 cores", flush=True)
    signal.signal(signal.SIGTERM, _interrupt)
    with log_path.open("w", encoding="utf-8", buffering=1) as log, subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace") as process:
        assert process.stdout is not None
        try:
            for line in process.stdout:
                log.write(line)
                tail.append(line.rstrip("\n"))
                shown = summary(line, time.monotonic() - started)
                if shown:
                    print(shown, flush=True)
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: stop the build too, not only this script
            process.terminate()
            print(f"interrupted; the log so far is {log_path}", file=sys.stderr)
            return 130
    if process.returncode:
        print(f"the build failed (exit {process.returncode}); the last lines of {log_path}:", file=sys.stderr)
        print("\n".join(tail), file=sys.stderr)
    else:
        print(f"built in {(time.monotonic() - started) / 60:.1f} min", flush=True)
    return process.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
