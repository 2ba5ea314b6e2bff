"""Errors a user can act on.

The CLI prints a `LocalAIError` as one line on stderr, without a traceback; anything else is a bug.
"""


class LocalAIError(Exception):
    """An error caused by input, environment or configuration, with a message meant for the user."""


class ConversionError(LocalAIError):
    """A checkpoint cannot be converted (bad config, tensors, tokenizer or output type)."""


class PackageError(LocalAIError):
    """A model package or store entry is missing, malformed or already exists."""


class BackendError(LocalAIError):
    """A runtime backend cannot load or run a model."""


class SettingError(LocalAIError, ValueError):
    """A generation setting (from a command line, a request, a package's defaults) is out of range or unknown."""


def describe(exc: BaseException) -> str:
    """One line for a user: a LocalAIError's own message, anything else with its type (it is a bug or a
    library's failure, and the type says which)."""
    text = str(exc) if isinstance(exc, LocalAIError) else f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())
