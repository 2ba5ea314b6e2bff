from __future__ import annotations

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
