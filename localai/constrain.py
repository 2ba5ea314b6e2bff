"""What constrains one request's answer, as one guide on the model's vocabulary (localai/guide.py): its
structured-output constraint, its tool calls, or both.

- a constraint alone: the answer matches it from its first token;
- tool_choice "required" or a tool's name: the answer is calls (to that tool), in the model's format;
- "auto": the answer is free, and a call the model opens is written as its format says (`LazyGuide`);
  with a JSON constraint too, the answer is either calls or the JSON document;
- "none": the model is not told of the tools, and nothing constrains calls.
Reasoning is never constrained: the engine applies a guide only outside the think block.
"""

from __future__ import annotations

import llguidance

from localai.backends.base import Backend
from localai.chat_format import ChatFormat
from localai.errors import SettingError
from localai.guide import Guide, LazyGuide, vocabulary
from localai.options import ChatOptions
from localai.structured import LEAD, NAMES, ConstraintError
from localai.tools.format import MAX_CALLS, Markup, ToolFormat, literal


def answer_guide(backend: Backend, fmt: ChatFormat, opts: ChatOptions,
                 tool_format: ToolFormat | None) -> Guide | LazyGuide | None:
    """The guide of a request with `opts` on `backend`, or None when nothing constrains its answer."""
    tools = opts.offered_tools
    if not tools and opts.constraint is None:
        return None
    tokenizer = vocabulary(backend, fmt.end_of_turn_ids)
    if not tools:
        assert opts.constraint is not None
        return Guide(tokenizer, opts.constraint.grammar())
    if tool_format is None:
        raise SettingError(f"{fmt.name}'s chat template takes no tools (no known tool-call format in it)")
    markup, most = _markup(backend, tokenizer), MAX_CALLS if opts.parallel_tool_calls else 1
    if opts.tool_choice == "auto" and opts.constraint is None:
        body = tool_format.body_rule(tools, markup, most=most)
        return LazyGuide(tokenizer, f"start: body\n{body}", [tool_format.opening]) if body else None
    forced = [t for t in tools if t.name == opts.tool_choice] or list(tools)
    calls = tool_format.calls_rule(forced, markup, most=most)
    if opts.tool_choice != "auto":
        return Guide(tokenizer, f"start: LEAD? calls\n{calls}{LEAD}")
    assert opts.constraint is not None
    if not opts.constraint.is_json:
        raise ConstraintError(f"a {NAMES[opts.constraint.kind]} cannot be combined with tools; use a JSON schema, "
                              "or tool_choice none")
    if not tool_format.opening:
        raise ConstraintError(f"{tool_format.name}'s calls are JSON answers themselves: a JSON answer cannot be "
                              "told from a call; use tool_choice none or required")
    return Guide(tokenizer, f"start: LEAD? (calls | answer)\n{calls}{opts.constraint.answer_rule()}{LEAD}")


def _markup(backend: Backend, tokenizer: llguidance.LLTokenizer) -> Markup:
    """How grammars write a tag: a control token by its id (it is never text), anything else as text."""
    def write(text: str) -> str:
        ids = backend.tokenize(text, add_bos=False, special=True)
        return f"<[{ids[0]}]>" if len(ids) == 1 and tokenizer.is_special_token(ids[0]) else literal(text)
    return write
