"""`localai serve`: the OpenAI- and Ollama-compatible HTTP server (see docs/serve.md).

app.py builds the ASGI app (security, errors, health, metrics) around two routers, openai_api.py and
ollama_api.py, which translate each API's request into a `ChatOptions` (fields.py) and stream the chat
engine's events back in that API's shape. catalog.py loads, shares and unloads models; stream.py runs
one generation on a worker thread and hands its events to the event loop.
"""
