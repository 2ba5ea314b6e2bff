"""The `localai` command. Each verb is a module in this package with `add_parser` and `run`.

Errors the user can act on are one line on stderr and exit status 1; `--debug` adds the traceback and
llama.cpp's log. Ctrl-C (or SIGTERM) unwinds normally, so half-written outputs are cleaned up, and
exits with 130.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import logging
import signal
import sys
import traceback
from types import FrameType

from localai.errors import LocalAIError, describe

COMMANDS = ("convert", "run", "chat", "serve", "bench", "eval", "pull", "ls", "info", "rm", "verify", "export",
            "import", "demo")
MODULES = {"import": "import_"}  # verbs that are Python keywords


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # argparse prints usage plus the message; one line is the contract
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    debug = argparse.ArgumentParser(add_help=False)
    debug.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show tracebacks and the runtime's log")
    parser = _Parser(prog="localai", description="Convert, run and measure local language models offline.",
                     parents=[debug])
    from localai import __version__

    parser.add_argument("--version", action="version", version=f"localai {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        module = importlib.import_module(f"localai.cli.{MODULES.get(name, name)}")
        command = module.add_parser(sub, parents=[debug])
        command.set_defaults(handler=module.run)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM: unwinds like Ctrl-C (cleanup runs), but nothing treats it as "stop this answer"."""


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise Terminated


def check_command(argv: list[str]) -> None:
    """A misspelled verb gets the close ones suggested (`localai rnu`: did you mean run?), as git does."""
    verb = next((arg for arg in argv if not arg.startswith("-")), None)
    if verb is None or verb in COMMANDS:
        return
    close = difflib.get_close_matches(verb, COMMANDS, n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(close)}?" if close else f"the commands are {', '.join(COMMANDS)}"
    print(f"error: unknown command {verb!r}: {hint} (see `localai --help`)", file=sys.stderr)
    raise SystemExit(2)  # what argparse exits with for any other usage error


def main(argv: list[str] | None = None) -> int:
    check_command(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    debug = getattr(args, "debug", False)
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="%(levelname)s: %(message)s")
    signal.signal(signal.SIGTERM, _terminate)
    try:
        return int(args.handler(args) or 0)
    except LocalAIError as exc:
        _fail(str(exc), debug)
        return 1
    except KeyboardInterrupt as exc:  # the shells' convention: 128 + the signal's number
        terminated = isinstance(exc, Terminated)
        print("terminated" if terminated else "interrupted", file=sys.stderr)
        return 128 + (signal.SIGTERM if terminated else signal.SIGINT)
    except BrokenPipeError:
        return 141
    except Exception as exc:
        _fail(f"unexpected {describe(exc)} (run with --debug for the traceback)", debug)
        return 1


def _fail(message: str, debug: bool) -> None:
    if debug:
        traceback.print_exc()
    print("error: " + " ".join(message.split()), file=sys.stderr)
