"""scripts/build_progress.py: the set-up's long compile shows its progress and keeps its log."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

SCRIPT = Path(__file__).parents[2] / "scripts" / "build_progress.py"
FAKE_BUILD = ("import sys\n"
              "print('Collecting llama-cpp-python==0.3.36')\n"
              "print('-- The C compiler identification is GNU 12.2.0')\n"
              "print('[ 45%] Building C object vendor/llama.cpp/ggml/src/ggml.c.o')\n"
              "print('  [12/300] /usr/bin/g++ -DGGML_BUILD -O3 -o x.o -c /tmp/b/vendor/llama.cpp/src/llama.cpp')\n"
              "print('compiler noise ' * 3)\n"
              "sys.exit(int(sys.argv[1]))\n")


def _run(tmp_path: Path, status: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "build.log"), "--", sys.executable, "-c",
                           FAKE_BUILD, str(status)], capture_output=True, text=True, timeout=60)


def test_progress_lines_are_shown_with_the_elapsed_time_and_everything_is_logged(tmp_path):
    result = _run(tmp_path, 0)
    assert result.returncode == 0, result.stderr
    shown = result.stdout.splitlines()
    assert any(line.endswith("[45%] Building C object vendor/llama.cpp/ggml/src/ggml.c.o") for line in shown)
    assert any(line.endswith("[12/300] compiling llama.cpp/src/llama.cpp") for line in shown)  # not the command
    assert any("Collecting llama-cpp-python" in line for line in shown)
    assert not any("compiler noise" in line or "compiler identification" in line for line in shown)
    assert all(line[:7].strip().endswith("s") for line in shown if "[" in line)  # " 0m00s  [45%] ..."
    assert "compiler noise" in (tmp_path / "build.log").read_text()
    assert shown[-1].startswith("built in")


def test_a_failed_build_keeps_its_status_and_shows_the_log_tail(tmp_path):
    result = _run(tmp_path, 3)
    assert result.returncode == 3
    assert "the build failed (exit 3)" in result.stderr and "compiler noise" in result.stderr


def test_sigterm_stops_the_build_as_well(tmp_path):
    marker = tmp_path / "still-running"
    slow = (f"import time, pathlib\nprint('[1/2] start', flush=True)\ntime.sleep(3)\n"
            f"pathlib.Path({str(marker)!r}).touch()\n")
    process = subprocess.Popen([sys.executable, str(SCRIPT), str(tmp_path / "build.log"), "--", sys.executable, "-c",
                                slow], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None
    while "[1/2]" not in process.stdout.readline():
        pass
    process.terminate()
    assert process.wait(timeout=30) == 130
    time.sleep(4)
    assert not marker.exists()  # the build was stopped, not left running
