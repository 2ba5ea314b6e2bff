"""Native work that runs in a child process: TensorRT's engine builds and llama.cpp's quantizer.

Two reasons. Native code can abort the whole process on input it dislikes (TensorRT for RTX 1.7
segfaulted on graphs with `If`), which must be one clear error, not a dead `localai convert`. And it
can hold the process for minutes inside one C call, during which Python runs no signal handler in a
way that can stop it: llama.cpp's quantizer calls localai's log callback, a Ctrl-C lands in that
callback, and ctypes can only print the exception and carry on ("Exception ignored on calling ctypes
callback"), so the conversion finished and installed its package. With the work in a child, the
parent's Ctrl-C or SIGTERM unwinds the parent at once: `subprocess.run` kills the child on any
exception and waits for it, so nothing writes into the staging folder while it is deleted.

The child gets one JSON job as its argument and prints one JSON line on stdout: `{"result": ...}` or
`{"error": "..."}` (a `LocalAIError`'s message); its stderr is kept for the report of a crash.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from localai.errors import LocalAIError


def program(module: str) -> str:
    """The child's Python program: `module.child_main(job)` (not `-m module`, which runpy warns about when
    the package has imported the module already)."""
    return f"import sys; from {module} import child_main; sys.exit(child_main(sys.argv[1]))"


@dataclass(frozen=True)
class Outcome:
    """What a child reported: its result, or its error, or neither (it crashed)."""

    result: Any
    error: str | None
    returncode: int
    stderr_tail: str

    @property
    def crash(self) -> str:
        """How it died, for an error message: "signal 11: <its last stderr line>"."""
        how = f"signal {-self.returncode}" if self.returncode < 0 else f"status {self.returncode}"
        return f"{how}: {self.stderr_tail or 'no message'}"


def run(code: str, job: dict[str, Any]) -> Outcome:
    """Run the Python program `code` (see `program`) on `job` in a child process and wait for it."""
    with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as log:
        # -P: the folder localai was started in (a stray checkout, a downloaded folder) is not put on sys.path
        child = subprocess.run([sys.executable, "-P", "-c", code, json.dumps(job)], stdout=subprocess.PIPE,
                               stderr=log, text=True, errors="replace", check=False)
        log.seek(0)
        errors = log.read().strip()
    message = _last_message(child.stdout)
    result = message.get("result") if child.returncode == 0 else None
    error = message.get("error")
    return Outcome(result, str(error) if error is not None else None, child.returncode,
                   errors.splitlines()[-1] if errors else "")


def _last_message(stdout: str) -> dict[str, Any]:
    """The child's report: its last line that is a JSON object (native code may print anything else)."""
    for line in reversed(stdout.splitlines()):
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if isinstance(message, dict):
            return message
    return {}


def main(work: Callable[[dict[str, Any]], Any], job_text: str) -> int:
    """The child's side: `work(job)`, reported as one JSON line on stdout."""
    # Ctrl-C reaches the whole foreground process group: the child just stops (the parent reports it)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    try:
        result = work(json.loads(job_text))
    except LocalAIError as exc:
        print(json.dumps({"error": str(exc)}), flush=True)
        return 1
    print(json.dumps({"result": result}), flush=True)
    return 0
