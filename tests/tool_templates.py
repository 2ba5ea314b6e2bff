"""Chat templates of our own in each tool-call family's conventions (as the families' published templates
lay them out: where the tools go, how past calls and tool results are written), for the tool tests.

Each renders `tools` (transformers' list of OpenAI function objects), assistant `tool_calls` (arguments as
objects) and `tool` messages; `FAMILY_TEMPLATES` maps localai's format names to them.
"""

from __future__ import annotations

# Nemotron Nano 2: turns opened by <SPECIAL_10>/<SPECIAL_11>; tools in <AVAILABLE_TOOLS> in the system
# turn; calls as one JSON list in <TOOLCALL>; consecutive results as one <TOOL_RESPONSE> list in a user turn
NANO2_TOOLS = """\
{%- set system = messages[0]['content'] if messages and messages[0]['role'] == 'system' else '' -%}
<SPECIAL_10>System
{{ system }}
{%- if tools -%}
{{ '\\n\\n' if system }}You can use the following tools to assist the user if required:
<AVAILABLE_TOOLS>[{% for t in tools %}{{ (t.function if t.function is defined else t) | tojson }}\
{{ ', ' if not loop.last }}{% endfor %}]</AVAILABLE_TOOLS>

If you decide to call any tool(s), use the following format:
<TOOLCALL>[{"name": "tool_name", "arguments": {"arg": "value"}}]</TOOLCALL>

The tool results come back as:
<TOOL_RESPONSE>[result1, result2]</TOOL_RESPONSE>
{%- endif %}

{% for m in messages -%}
{%- if m['role'] == 'user' -%}
<SPECIAL_11>User
{{ m['content'] | trim }}
{% elif m['role'] == 'assistant' -%}
<SPECIAL_11>Assistant
{{ m['content'].split('</think>')[-1] | trim }}
{%- if m['tool_calls'] -%}
{{ '\\n\\n' if m['content'] | trim }}<TOOLCALL>[{% for c in m['tool_calls'] %}\
{"name": "{{ c.function.name }}", "arguments": {{ c.function.arguments | tojson }}}{{ ', ' if not loop.last }}\
{% endfor %}]</TOOLCALL>
{%- endif %}
<SPECIAL_12>
{% elif m['role'] == 'tool' -%}
{%- if loop.first or messages[loop.index0 - 1]['role'] != 'tool' -%}<SPECIAL_11>User
<TOOL_RESPONSE>[{% endif -%}
{{ m['content'] }}
{%- if loop.last or messages[loop.index0 + 1]['role'] != 'tool' -%}]</TOOL_RESPONSE>
{% else %}, {% endif -%}
{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
<SPECIAL_11>Assistant
<think>
{% endif -%}
"""

# Nemotron 3 (and Qwen3-Coder): ChatML; tools described in XML in the system turn; calls as
# <tool_call><function=...><parameter=...>, strings raw and other values as JSON; results in <tool_response>
NEMOTRON3_TOOLS = """\
{%- set thinking = enable_thinking if enable_thinking is defined else true -%}
{%- set system = messages[0]['content'] if messages and messages[0]['role'] == 'system' else '' -%}
<|im_start|>system
{{ system }}
{%- if tools -%}
{{ '\\n\\n' if system }}# Tools

You have access to the following functions:

<tools>
{% for t in tools -%}
{%- set f = t.function if t.function is defined else t -%}
<function>
<name>{{ f.name }}</name>
{% if f.description %}<description>{{ f.description | trim }}</description>
{% endif -%}
<parameters>
{% for name, p in (f.parameters.properties or {}) | items -%}
<parameter>
<name>{{ name }}</name>
{% if p.type is defined %}<type>{{ p.type | string }}</type>
{% endif -%}
{% if p.enum is defined %}<enum>{{ p.enum | tojson }}</enum>
{% endif -%}
</parameter>
{% endfor -%}
{% if f.parameters.required is defined %}<required>{{ f.parameters.required | tojson }}</required>
{% endif -%}
</parameters>
</function>
{% endfor -%}
</tools>

If you choose to call a function ONLY reply in the following format with NO suffix:

<tool_call>
<function=example_function_name>
<parameter=example_parameter_1>
value_1
</parameter>
</function>
</tool_call>
{%- endif %}<|im_end|>
{% for m in messages -%}
{%- if m['role'] == 'user' -%}
<|im_start|>user
{{ m['content'] }}<|im_end|>
{% elif m['role'] == 'assistant' -%}
<|im_start|>assistant
<think></think>{{ m['content'].split('</think>')[-1] | trim }}
{% for c in m['tool_calls'] or [] -%}
<tool_call>
<function={{ c.function.name }}>
{% for k, v in c.function.arguments | items -%}
<parameter={{ k }}>
{{ v | tojson if v is mapping or (v is sequence and v is not string) else v }}
</parameter>
{% endfor -%}
</function>
</tool_call>
{% endfor -%}
<|im_end|>
{% elif m['role'] == 'tool' -%}
{%- if loop.first or messages[loop.index0 - 1]['role'] != 'tool' -%}<|im_start|>user
{% endif -%}
<tool_response>
{{ m['content'] }}
</tool_response>
{% if loop.last or messages[loop.index0 + 1]['role'] != 'tool' -%}<|im_end|>
{% endif -%}
{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
<|im_start|>assistant
{{ '<think>\\n' if thinking else '<think></think>' }}
{%- endif -%}
"""

# Qwen3 / Hermes: ChatML; tools as JSON lines in <tools>; each call a JSON object in <tool_call>; results in
# <tool_response> in a user turn; thinking off through enable_thinking
HERMES_TOOLS = """\
{%- if tools or messages[0]['role'] == 'system' -%}
<|im_start|>system
{% if messages[0]['role'] == 'system' %}{{ messages[0]['content'] }}{% endif %}
{%- if tools -%}
{{ '\\n\\n' if messages[0]['role'] == 'system' }}# Tools

You may call one or more functions to assist with the user query.

You are provided with function signatures within <tools></tools> XML tags:
<tools>
{% for t in tools %}{{ t | tojson }}
{% endfor %}</tools>

For each function call, return a json object with function name and arguments within <tool_call></tool_call> \
XML tags:
<tool_call>
{"name": <function-name>, "arguments": <args-json-object>}
</tool_call>
{%- endif %}<|im_end|>
{% endif -%}
{%- for m in messages -%}
{%- if m['role'] == 'user' -%}
<|im_start|>user
{{ m['content'] }}<|im_end|>
{% elif m['role'] == 'assistant' -%}
{%- set content = m['content'].split('</think>')[-1] | trim -%}
<|im_start|>assistant
{{ content }}
{%- for c in m['tool_calls'] or [] -%}
{{ '\n' if content or not loop.first }}<tool_call>
{"name": "{{ c.function.name }}", "arguments": {{ c.function.arguments | tojson }}}
</tool_call>
{%- endfor %}<|im_end|>
{% elif m['role'] == 'tool' -%}
{{ '<|im_start|>user' if loop.first or messages[loop.index0 - 1]['role'] != 'tool' }}
<tool_response>
{{ m['content'] }}
</tool_response>
{%- if loop.last or messages[loop.index0 + 1]['role'] != 'tool' %}<|im_end|>
{% endif -%}
{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
<|im_start|>assistant
{% if enable_thinking is defined and enable_thinking is false %}<think>

</think>

{% endif -%}
{%- endif -%}
"""

# Llama 3.1-3.3: header-delimited turns, `Environment: ipython` and the tools (indented JSON) in the system
# turn; a call is the whole answer, {"name": ..., "parameters": ...}; results come back as ipython turns
LLAMA3_TOOLS = """\
{{- bos_token -}}
<|start_header_id|>system<|end_header_id|>

{% if tools %}Environment: ipython
{% endif -%}
Cutting Knowledge Date: December 2023

{% if tools -%}
You have access to the following functions. To call a function, respond with JSON for a function call in the \
format {"name": function name, "parameters": dictionary of argument name and its value}. Do not use variables.

{% for t in tools %}{{ t | tojson(indent=4) }}

{% endfor -%}
{%- endif -%}
{{ messages[0]['content'] if messages[0]['role'] == 'system' }}<|eot_id|>
{%- for m in messages -%}
{%- if m['role'] == 'user' -%}
<|start_header_id|>user<|end_header_id|>

{{ m['content'] | trim }}<|eot_id|>
{%- elif m['role'] == 'assistant' and m['tool_calls'] -%}
{%- set c = m['tool_calls'][0].function -%}
<|start_header_id|>assistant<|end_header_id|>

{"name": "{{ c.name }}", "parameters": {{ c.arguments | tojson }}}<|eot_id|>
{%- elif m['role'] == 'assistant' -%}
<|start_header_id|>assistant<|end_header_id|>

{{ m['content'] | trim }}<|eot_id|>
{%- elif m['role'] in ('tool', 'ipython') -%}
<|start_header_id|>ipython<|end_header_id|>

{{ m['content'] }}<|eot_id|>
{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
<|start_header_id|>assistant<|end_header_id|>

{% endif -%}
"""

FAMILY_TEMPLATES = {"nemotron_nano2": NANO2_TOOLS, "nemotron3": NEMOTRON3_TOOLS, "hermes": HERMES_TOOLS,
                    "llama3": LLAMA3_TOOLS}
