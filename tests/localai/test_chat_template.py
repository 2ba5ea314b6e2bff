from __future__ import annotations

import subprocess
import sys

import pytest

from localai.chat_template import ChatTemplateError, render
from localai.demo_model import CHAT_TEMPLATE


def test_demo_template_thinking_switches_and_history_without_reasoning():
    messages = [{"role": "system", "content": "Be brief. /no_think"}, {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "<think>scratch</think>hello"}, {"role": "user", "content": "and?"}]
    text = render(CHAT_TEMPLATE, messages, bos_token="<s>")
    assert text.startswith("<s><|system|>Be brief.<|end|>")
    assert "<|assistant|>hello<|end|>" in text and "scratch" not in text
    assert text.endswith("<|assistant|><think></think>")
    thinking = render(CHAT_TEMPLATE, [{"role": "user", "content": "2+2? /think"}], bos_token="<s>")
    assert thinking.endswith("<|user|>2+2?<|end|>\n<|assistant|><think>\n")


def test_templates_run_in_a_sandbox():
    with pytest.raises(ChatTemplateError):
        render("{{ messages.__class__.__mro__[1].__subclasses__() }}", [])
    with pytest.raises(ChatTemplateError, match="no system role"):
        render("{{ raise_exception('no system role') }}", [])
    with pytest.raises(ChatTemplateError, match="chat template failed"):
        render("{% for %}", [])


@pytest.mark.parametrize("template", [
    "{{ ('a' * 100000) * 2000 }}",
    "{% for i in range(100000) %}{% for j in range(100000) %}xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx{% endfor %}{% endfor %}",
    "{{ 2 ** 100000 }}",
    "{{ 1 / 0 }}",
    "{{ 'x' + 1 }}",
])
def test_runaway_or_broken_templates_fail_as_template_errors(template):
    with pytest.raises(ChatTemplateError, match="chat template failed"):
        render(template, [])


_RENDER_IN_A_BOUND = """
import resource, sys
resource.setrlimit(resource.RLIMIT_DATA, (400 << 20,) * 2)
from localai import chat_template
chat_template.RENDER_SECONDS = 2.0
try:
    print("ok:", chat_template.render(sys.argv[1], []))
except chat_template.ChatTemplateError as exc:
    print("refused:", exc)
print(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:")))
"""


SEVENTEEN_MB = "{% set s = 'a' * 1000000 %}"  # 17 of these make one more than the 16 M characters allowed


def _render_bounded(template: str) -> tuple[str, int]:
    """The outcome of rendering `template` in a child allowed 400 MB of data, and its peak RSS in kB."""
    result = subprocess.run([sys.executable, "-c", _RENDER_IN_A_BOUND, template], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    outcome, peak = result.stdout.strip().rsplit("\n", 1)
    return outcome, int(peak)


@pytest.mark.parametrize(("template", "refusal"), [
    ("{% if false %}{{ 'a'|center(1000000000) }}{% endif %}ok", None),  # folded at compile time before
    ("{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}",
     "concatenation (~) would build"),
    ("{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s }}",
     "concatenation (+) would build"),
    ("{{ (('a' * 1000000,) * 1000)|join }}", "repetition too large"),
    (SEVENTEEN_MB + "{{ [s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s]|join }}", "the join filter would build"),
    (SEVENTEEN_MB + "{{ ''.join([s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s]) }}", "str.join would build"),
    (SEVENTEEN_MB + "{{ [{'x': s}, {'x': s}, {'x': s}, {'x': s}, {'x': s}, {'x': s}, {'x': s}, {'x': s}, {'x': s}, "
     "{'x': s}, {'x': s}, {'x': s}, {'x': s}, {'x': s}, {'x': s}, {'x': s}, {'x': s}]|join('', attribute='x') }}",
     "the join filter would build"),
    ("{{ ('a'.encode() * 1500000000)|length }}", "str.encode is not available"),
    ("{{ ('a' * 1000000).translate({97: 'x' * 1500})|length }}", "str.translate would build"),
    ("{% set row = [0] * 100000 %}{{ [row, row, row, row, row, row, row, row, row, row] * 40 }}",
     "repetition too large"),
    ("{% set row = [0] * 100000 %}{{ [row, row, row, row, row, row, row, row, row, row] }}", "output would build"),
    ("{% set row = [0] * 100000 %}{{ [row, row, row, row, row, row, row, row, row, row]|string|length }}",
     "the string filter would build"),
    ("{% set row = [0] * 100000 %}{{ 'x' ~ [row, row, row, row, row, row, row, row, row, row] }}",
     "concatenation (~) would build"),
    ("{% set row = [0] * 100000 %}{{ [row, row, row, row, row, row, row, row, row, row]|tojson|length }}",
     "the tojson filter would build"),
    ("{% set row = [0] * 100000 %}{{ [row, row, row, row, row, row, row, row, row, row, row]|sum(start=[]) }}",
     "the sum filter would build"),
    ("{{ 'a'.center(1000000000) }}", "str.center would build"),
    ("{{ 'a'|center(1000000000) }}", "the center filter would build"),
    ("{{ '%999999999s' % 'a' }}", "% formatting would build"),
    ("{{ '{:999999999}'.format('a') }}", "str.format would build"),
    ("{{ '%999999999s'|format('a') }}", "the format filter would build"),
    ("{{ '{0:{1}}'.format('a', 999999999) }}", "str.format would build"),
    ("{{ '%*s' % (999999999, 'a') }}", "% formatting would build"),
    ("{{ '%*s'|format(999999999, 'a') }}", "the format filter would build"),
    ("{{ ('\\t' * 1000000).expandtabs(100) }}", "str.expandtabs would build"),
    ("{{ ('a' * 1000000)|replace('a', 'b' * 32) }}", "the replace filter would build"),
    ("{{ ('a' * 1000000).replace('a', 'b' * 32) }}", "str.replace would build"),
    ("{{ ('a\\n' * 500000)|indent(100) }}", "the indent filter would build"),
    ("{{ ('a ' * 500000)|wordwrap(1, wrapstring='x' * 100) }}", "the wordwrap filter would build"),
    ("{% set n = (10 ** 64) ** 64 %}{{ n ** 64 }}", "an integer of more than"),
    ("{{ lipsum(1000000) }}", "'lipsum' is undefined"),
    # 400 kB as text, 240 MB once every item is indented 150 levels deep
    ("{% set n = namespace(v=['x'] * 100000) %}{% for i in range(150) %}{% set n.v = [n.v] %}{% endfor %}"
     "{{ n.v|tojson(indent=16) }}", "the tojson filter would build"),
    ("{{ [[1]]|tojson(indent=1000000000) }}", "tojson indents by at most 16"),
    ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", "ran longer than 2 s"),
])
def test_template_bombs_stay_within_bounds(template, refusal):
    outcome, peak_kb = _render_bounded(template)
    assert outcome == ("ok: ok" if refusal is None else outcome)
    if refusal is not None:
        assert outcome.startswith("refused: chat template failed") and refusal in outcome, outcome
    assert peak_kb < 200_000, f"peak {peak_kb} kB"


def test_tojson_and_loop_controls_as_transformers_has_them():
    """transformers' tojson takes indent, separators, sort_keys and ensure_ascii (Llama 3's template indents its
    tools), and templates may use {% break %} and {% continue %}."""
    value = {"b": "é", "a": [1, 2]}
    assert render("{{ v|tojson }}", [], v=value) == '{"b": "é", "a": [1, 2]}'
    assert render("{{ v|tojson(indent=2, sort_keys=true) }}", [], v=value) == (
        '{\n  "a": [\n    1,\n    2\n  ],\n  "b": "é"\n}')
    assert render("{{ v|tojson(separators=[',', ':'], ensure_ascii=true) }}", [], v=value) == (
        '{"b":"\\u00e9","a":[1,2]}')
    loop = ("{% for i in [1, 2, 3, 4] %}{% if i == 2 %}{% continue %}{% endif %}{% if i == 4 %}{% break %}"
            "{% endif %}{{ i }}{% endfor %}")
    assert render(loop, []) == "13"


def test_real_templates_render_as_before():
    """The bounds leave ordinary template work alone: joins, concatenation, formatting, tojson."""
    template = ("{% for m in messages %}{{ '<|' ~ m['role'] ~ '|>' + m['content']|trim }}{{ ', '.join(['a', 'b']) }}"
                "{{ '%-5s|' % m['role'] }}{{ '{:>6}'.format(m['role']) }}{{ m|tojson }}{% endfor %}")
    text = render(template, [{"role": "user", "content": " hi "}], add_generation_prompt=False)
    assert text == '<|user|>hia, buser |  user{"role": "user", "content": " hi "}'
    others = ("{{ [1, 2, 3]|sum }} {{ [[1], [2]]|sum(start=[]) }} {{ ['x', 'y']|join('-') }} {{ 42 }} "
              "{{ [1, 2]|string }} {{ {'a': 1}|pprint }} {{ 'ab'.upper() ~ 7 }} {{ 'a b'.split() }} "
              "{{ 'x'|center(5) }}")
    assert render(others, []) == "6 [1, 2] x-y 42 [1, 2] {'a': 1} AB7 ['a', 'b']   x  "


def test_a_render_that_keeps_many_bounded_strings_alive_is_stopped_by_its_memory():
    """Each string stays under the size bound, but the loop keeps hundreds of them: the watchdog stops the render
    once it has grown the process by 256 MB, before the child's 400 MB limit."""
    bomb = ("{% set ns = namespace(items=[]) %}{% set s = 'a' * 1000000 %}"
            "{% for i in range(100000) %}{% set ns.items = ns.items + [s.upper()] %}{% endfor %}{{ ns.items|length }}")
    outcome, peak_kb = _render_bounded(bomb)
    assert outcome.startswith("refused: chat template failed: it took more than 256 MB of memory"), outcome
    assert peak_kb < 400_000, f"peak {peak_kb} kB"


def test_a_render_overlapping_a_weights_load_is_not_charged_for_its_memory():
    """A server loads one model while it renders another request's template: the growth is not the render's,
    so the memory check stands down for a render that overlaps a load (the time limit still holds)."""
    from localai.chat_template import _Watchdog, loading_weights

    alone = _Watchdog()
    assert not alone._overlapped()
    during = _Watchdog()
    with loading_weights():
        assert during._overlapped()
        started_inside = _Watchdog()
        assert started_inside._overlapped()
    assert during._overlapped()  # the load came and went while it ran
    assert not _Watchdog()._overlapped()
