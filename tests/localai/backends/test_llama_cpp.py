"""The llama.cpp backend's load: what llama-cpp-python would do on its own that localai must not let it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from converters import convert

# a memory bomb in a branch that never runs: Jinja2's compiler folds it into a 4 GB constant
BOMB = "{% if false %}{{ 'a'|center(4000000000) }}{% endif %}{{ messages[0]['content'] }}"
BROKEN = "{% for message in messages %}{{ message['content'] }"

_RUN_LIMITED = """
import resource, sys
resource.setrlimit(resource.RLIMIT_DATA, (1536 << 20,) * 2)
from localai.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("template", [BOMB, BROKEN], ids=["bomb", "syntax-error"])
def test_a_gguf_chat_template_is_compiled_only_in_the_sandbox(small_checkpoint, tmp_path, template, isolated_store):
    """llama-cpp-python compiles a GGUF's templates while it loads: the bomb ran out of 1.5 GB there, the
    broken template stopped even --raw. Raw completion now works, and chat names the template's fault."""
    config_path = small_checkpoint / "tokenizer_config.json"
    config = json.loads(config_path.read_text()) if config_path.exists() else {}
    config_path.write_text(json.dumps(config | {"chat_template": template}))
    (small_checkpoint / "chat_template.jinja").unlink(missing_ok=True)
    package = convert(str(small_checkpoint), output=tmp_path / "pkg", name="templated").root

    def run(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", _RUN_LIMITED, "run", str(package), "--prompt", "hi",
                               "--max-tokens", "2", *extra], capture_output=True, text=True, timeout=120)

    raw = run("--raw")
    assert raw.returncode == 0, raw.stderr
    chat = run()
    if template == BOMB:  # localai's sandbox renders it without folding the dead branch
        assert chat.returncode == 0, chat.stderr
    else:
        assert chat.returncode == 1 and chat.stderr.startswith("error: chat template failed: TemplateSyntaxError")
        assert len(chat.stderr.strip().splitlines()) == 1, chat.stderr
