"""`localai chat MODEL --plain`: a line-mode chat for terminals where a full-screen app is unwanted.

Lines starting with a slash are commands when they are exactly one of COMMANDS; anything else is sent.
Ctrl-C while the model answers stops that answer (it is not kept); an error in one turn is shown and
the conversation goes on; Ctrl-D or /quit leaves, SIGTERM ends the process.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from localai.cli import Terminated
from localai.cli.run import Printer, add_generation_arguments, budget, generation_settings, text
from localai.errors import LocalAIError, describe

COMMANDS = {
    "/think": "reasoning on",
    "/no_think": "reasoning off",
    "/budget N": "cap reasoning at N tokens ('unlimited' to lift the cap)",
    "/tool TEXT": "TEXT is the result of the model's next pending tool call (--tools)",
    "/reset": "start a new conversation",
    "/save FILE": "write the conversation as JSON",
    "/help": "this list",
    "/quit": "leave",
}


def add_parser(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    p = sub.add_parser("chat", parents=parents, help="chat with a model in the terminal",
                       description="Chat with a model in a full-screen terminal app (--plain: line mode).")
    p.add_argument("model", metavar="MODEL", nargs="?",
                   help="package folder, manifest.json, store name or .gguf file (default: choose from the store)")
    p.add_argument("--plain", action="store_true", help="line mode, no full-screen app")
    p.add_argument("--system", type=text, help="system prompt")
    p.add_argument("--save-dir", type=Path, help="where Ctrl+S and metrics exports write (default: LOCALAI_HOME/chats)")
    add_generation_arguments(p)
    return p


def run(args: argparse.Namespace) -> int:
    if not args.plain:
        return _run_app(args)
    if args.model is None:
        raise LocalAIError("--plain needs a MODEL")
    return plain_chat(args.model, generation_settings(args), n_ctx=args.ctx, n_threads=args.threads,
                      device=args.device, system=args.system)


def _run_app(args: argparse.Namespace) -> int:
    from localai import store
    from localai.options import ChatOptions
    from tui.app import ChatApp

    settings = generation_settings(args)  # read once: schema, grammar and tools files among them
    ChatOptions().changed(**settings)  # bad settings: one line now, not an error inside the app
    app = ChatApp(args.model, load_options={"n_ctx": args.ctx, "n_threads": args.threads, "device": args.device},
                  settings=settings, save_dir=args.save_dir or store.home() / "chats",
                  system=args.system)
    app.run()
    return 0


def plain_chat(model_ref: str, settings: dict[str, Any], *, n_ctx: int | None = None, n_threads: int | None = None,
               device: str = "auto", system: str | None = None) -> int:
    """The line-mode chat on `model_ref`; `settings` change the model's defaults (`ChatOptions.changed`)."""
    import localai
    from localai.conversation import Conversation

    model = localai.load(model_ref, n_ctx=n_ctx, n_threads=n_threads, device=device)
    try:
        conversation = Conversation(model, model.defaults.changed(**settings), system=system)
        print(f"{model.manifest.name} ({model.backend.name}, context {model.backend.n_ctx}). /help for commands.")
        while True:
            try:
                line = input("> ")
            except EOFError:
                print()
                return 0
            if not line.strip():
                continue
            if line.startswith("/") and _command(line.strip(), conversation):
                if line.strip() == "/quit":
                    return 0
                continue
            printer = Printer()
            try:
                name, _, result = line.partition(" ")
                turn = conversation.send_tool_result(result) if name == "/tool" and result else conversation.send(line)
                for event in turn:
                    printer(event)
                if waiting := conversation.pending_calls():
                    print(f"({len(waiting)} tool call(s) wait for a result: /tool TEXT answers "
                          f"{waiting[0]['function']['name']})")
            except Terminated:
                raise
            except KeyboardInterrupt:
                print("\n(stopped; this answer is not kept)", file=sys.stderr)
            except Exception as exc:  # the conversation goes on; this turn is not kept
                print("error: " + describe(exc), file=sys.stderr)
    finally:
        model.close()


def _command(line: str, conversation: object) -> bool:
    """Run `line` if it is a command; False if it is a message that happens to start with '/'."""
    from localai.conversation import Conversation

    assert isinstance(conversation, Conversation)
    name, _, arg = line.partition(" ")
    options = conversation.options
    if name == "/think" and not arg:
        cap = None if options.reasoning_budget == 0 else options.reasoning_budget  # 0 would keep reasoning off
        conversation.options = replace(options, think=True, reasoning_budget=cap)
        print("reasoning on")
    elif name == "/no_think" and not arg:
        conversation.options = replace(options, think=False)
        print("reasoning off")
    elif name == "/budget" and arg:
        try:
            cap = budget(arg)
        except (ValueError, argparse.ArgumentTypeError):
            print("usage: /budget N (N >= 0) or /budget unlimited", file=sys.stderr)
            return True
        conversation.options = replace(options, reasoning_budget=cap)
        print(f"reasoning budget: {'unlimited' if cap is None else cap}")
    elif name == "/reset" and not arg:
        conversation.reset()
        print("new conversation")
    elif name == "/save" and arg:
        try:
            conversation.save(Path(arg).expanduser())
        except (OSError, LocalAIError) as exc:
            print(f"cannot save: {getattr(exc, 'strerror', None) or exc}", file=sys.stderr)
            return True
        print(f"saved to {arg}")
    elif name == "/tool" and arg:
        return False  # a turn: the result is sent
    elif name in ("/help", "/quit") and not arg:
        if name == "/help":
            for command, meaning in COMMANDS.items():
                print(f"  {command:<12} {meaning}")
    else:
        return False
    return True
