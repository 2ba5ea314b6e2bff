"""Model packages: a folder of artifacts plus `manifest.json`, written atomically.

A package is built in a hidden staging folder beside its target and renamed into place only when
complete, so a failed or interrupted conversion never leaves a half-written package behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from localai.errors import PackageError
from localai.jsonfile import read_json_object

MANIFEST_NAME = "manifest.json"
SCHEMA_VERSION = 1
STAGING_MARK = ".partial-"
MAX_CONTEXT = 1 << 24  # tokens a manifest may declare; hybrid GGUFs say 2^20
# a package's name is its folder's and its archive's: never a path, never a terminal control sequence
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,127}$")


def check_name(name: object) -> str:
    """`name` if it is a valid package name (the store's rule, also for every manifest read), else
    `PackageError`."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name) or ".." in name:
        raise PackageError(f"invalid package name {name!r}: use 1-128 lowercase letters, digits, '.', '_' or '-', "
                           "starting with a letter or digit")
    return name


@dataclass(frozen=True)
class Artifact:
    """One file of a package: its path relative to the package, format, quantization, size and hash."""

    path: str
    format: str
    quant: str
    bytes: int
    sha256: str


def _artifact(data: dict[str, Any]) -> Artifact:
    """An artifact entry, type-checked: manifests come from archives and copies, not only from localai."""
    artifact = Artifact(**data)
    texts = (artifact.path, artifact.format, artifact.quant, artifact.sha256)
    if not all(isinstance(t, str) for t in texts) or not artifact.path:
        raise PackageError(f"malformed manifest: bad artifact entry {data!r}")
    parts = PurePosixPath(artifact.path).parts
    if (artifact.path.startswith("/") or "\\" in artifact.path or any(p in (".", "..") for p in parts)
            or "/".join(parts) != artifact.path or not artifact.path.isprintable()):
        raise PackageError(f"malformed manifest: artifact path {artifact.path!r} is not a plain path in the package")
    if isinstance(artifact.bytes, bool) or not isinstance(artifact.bytes, int) or artifact.bytes < 0:
        raise PackageError(f"malformed manifest: bad size of artifact {artifact.path!r}")
    if artifact.sha256 and (len(artifact.sha256) != 64 or any(c not in "0123456789abcdef" for c in artifact.sha256)):
        raise PackageError(f"malformed manifest: bad sha256 of artifact {artifact.path!r}")
    return artifact


@dataclass(frozen=True)
class ThinkTokens:
    """The texts that open and close a reasoning block, as the model's tokenizer spells them."""

    start: str
    end: str


# the reasoning markers localai recognises in a vocabulary (converters) or a bare GGUF's (runtime)
KNOWN_THINK_TOKENS = (ThinkTokens("<think>", "</think>"),)


@dataclass
class Manifest:
    """What a package holds and where it came from (see docs/package-format.md)."""

    name: str
    architecture: str
    artifacts: list[Artifact]
    context_length: int
    tokenizer: dict[str, Any] = field(default_factory=dict)
    chat_template: str | None = None
    thinking: ThinkTokens | None = None
    generation_defaults: dict[str, Any] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)
    converter: dict[str, Any] = field(default_factory=dict)
    graph: dict[str, Any] = field(default_factory=dict)  # ONNX: opset, flavour, inputs and outputs
    parameters: dict[str, Any] = field(default_factory=dict)  # total / active counts; MoE: experts
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["thinking"] = asdict(self.thinking) if self.thinking else None
        return {"schema_version": data.pop("schema_version"), **data}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        """Parse and check a manifest; raises `PackageError` naming what is wrong."""
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise PackageError(f"unsupported manifest schema_version {version!r} (expected {SCHEMA_VERSION})")
        try:
            artifacts = [_artifact(a) for a in data["artifacts"]]
            paths = [os.path.normpath(a.path) for a in artifacts]
            if len(set(paths)) != len(paths):
                raise PackageError("malformed manifest: an artifact is listed twice")
            thinking = ThinkTokens(**data["thinking"]) if data.get("thinking") else None
            if thinking and not (isinstance(thinking.start, str) and isinstance(thinking.end, str)):
                raise PackageError("malformed manifest: thinking markers must be strings")
            return cls(
                name=check_name(data["name"]),
                architecture=_typed(data, "architecture", str),
                artifacts=artifacts,
                context_length=_context_length(data["context_length"]),
                tokenizer=_tokenizer(_typed(data, "tokenizer", dict, {})),
                chat_template=_typed(data, "chat_template", str, None),
                thinking=thinking,
                generation_defaults=_typed(data, "generation_defaults", dict, {}),
                source=_typed(data, "source", dict, {}),
                converter=_typed(data, "converter", dict, {}),
                graph=_typed(data, "graph", dict, {}),
                parameters=_typed(data, "parameters", dict, {}),
                created=_typed(data, "created", str, ""),
            )
        except KeyError as exc:
            raise PackageError(f"malformed manifest: no {exc.args[0]!r}") from None
        except TypeError as exc:  # an artifact or thinking entry with missing or unknown keys
            raise PackageError(f"malformed manifest: {exc}") from None

    def artifact(self, fmt: str) -> Artifact | None:
        """The first artifact of format `fmt`, if any."""
        return next((a for a in self.artifacts if a.format == fmt), None)


_MISSING = object()


def _typed(data: dict[str, Any], key: str, kind: type, default: Any = _MISSING) -> Any:
    """`data[key]` if it is a `kind` (JSON null or absent: `default`, where the key is optional)."""
    value = data.get(key) if default is not _MISSING else data[key]
    if value is None and default is not _MISSING:
        return default
    if not isinstance(value, kind):
        raise PackageError(f"malformed manifest: {key} must be a JSON {'object' if kind is dict else 'string'}, "
                           f"not {type(value).__name__}")
    return value


def _tokenizer(summary: dict[str, Any]) -> dict[str, Any]:
    """The token ids a runtime acts on must be ids: `eos_token_ids` a list of them, each `*_token_id` one."""
    ids = summary.get("eos_token_ids", [])
    singles = [v for k, v in summary.items() if k.endswith("_token_id") and v is not None]
    if not isinstance(ids, list) or not all(_is_id(i) for i in [*ids, *singles]):
        raise PackageError("malformed manifest: tokenizer token ids must be whole numbers >= 0")
    texts = [v for k, v in summary.items() if k.endswith("_token") and v is not None]
    if not all(isinstance(text, str) for text in texts) or not isinstance(summary.get("add_bos", False), bool):
        raise PackageError("malformed manifest: tokenizer token texts must be strings and add_bos true or false")
    return summary


def _is_id(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**31


def _context_length(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_CONTEXT:
        raise PackageError(f"malformed manifest: context_length must be a whole number from 1 to {MAX_CONTEXT}")
    return value


@dataclass(frozen=True)
class Package:
    """A package on disk: its folder and parsed manifest."""

    root: Path
    manifest: Manifest

    @classmethod
    def open(cls, root: Path) -> Package:
        path = root / MANIFEST_NAME
        if path.is_symlink():  # it would describe files it does not travel with
            raise PackageError(f"{root}: {MANIFEST_NAME} is a link, not a file of the package")
        if not path.is_file():
            raise PackageError(f"{root} is not a model package (no {MANIFEST_NAME})")
        return cls(root, Manifest.from_dict(read_json_object(path, MANIFEST_NAME, PackageError)))

    def path_of(self, artifact: Artifact) -> Path:
        """Where `artifact` lies; a manifest cannot point outside its package."""
        path = (self.root / artifact.path).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise PackageError(f"package {self.manifest.name}: artifact path {artifact.path!r} leaves the package")
        return path


def file_sha256(path: Path, chunk: int = 8 * 1024 * 1024, on_read: Callable[[int], None] | None = None) -> str:
    """Hex sha256 of a file, read in chunks; `on_read` hears how many bytes each chunk had."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
            if on_read:
                on_read(len(block))
    return digest.hexdigest()


def write_manifest(root: Path, manifest: Manifest) -> None:
    (root / MANIFEST_NAME).write_text(json.dumps(manifest.to_dict(), indent=2) + "\n", encoding="utf-8")


def check_target(target: Path, *, replace: bool) -> None:
    """Refuse a target that exists, unless `replace` and it is a package (or an empty folder): `--force`
    never deletes anything that is not a model package."""
    if not target.exists() and not target.is_symlink():
        return
    if not replace:
        raise PackageError(f"{target} already exists (choose another --name or -o, or pass --force)")
    if target.is_symlink() or not target.is_dir():
        raise PackageError(f"{target} exists and is not a model package folder; refusing to replace it")
    if not (target / MANIFEST_NAME).is_file() and any(target.iterdir()):
        raise PackageError(f"{target} exists and is not a model package (no {MANIFEST_NAME}); refusing to replace it")


@contextlib.contextmanager
def staged_directory(target: Path, *, replace: bool = False,
                     lock: contextlib.AbstractContextManager[object] | None = None) -> Iterator[Path]:
    """Yield an empty staging folder beside `target`; on success rename it to `target`.

    On any exception, KeyboardInterrupt included, the staging folder is deleted and `target` is left
    as it was. With `replace`, an existing package at `target` is swapped out only after the new one is
    complete; without it, a package that appeared at `target` meanwhile is never overwritten. `lock`
    (the store's lock, for targets in the store) is held while the package is moved into place.
    """
    check_target(target, replace=replace)
    parent = target.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        remove_stale_staging(parent)
        staging = parent / f".{target.name}{STAGING_MARK}{os.getpid()}-{secrets.token_hex(4)}"
        staging.mkdir()
    except OSError as exc:
        raise PackageError(f"cannot write to {parent}: {exc.strerror or exc}") from exc
    try:
        yield staging
        with lock or contextlib.nullcontext():
            _move_into_place(staging, target, replace=replace)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _move_into_place(staging: Path, target: Path, *, replace: bool) -> None:
    check_target(target, replace=replace)  # again: another process may have written it meanwhile
    if not target.exists():
        try:
            # fails if another writer created a non-empty target since the check
            os.rename(staging, target)
        except OSError as exc:
            raise PackageError(f"{target} was created by another process meanwhile; not replacing it") from exc
        return
    retired = target.parent / f".{target.name}{STAGING_MARK}{os.getpid()}-old"
    os.rename(target, retired)
    try:
        os.rename(staging, target)
    except BaseException:
        os.rename(retired, target)  # put the old package back
        raise
    shutil.rmtree(retired, ignore_errors=True)


def remove_stale_staging(parent: Path) -> None:
    """Delete staging folders left by processes that no longer run (killed with SIGKILL, power loss)."""
    for entry in parent.glob(f".*{STAGING_MARK}*"):
        pid_text = entry.name.rsplit(STAGING_MARK, 1)[1].split("-", 1)[0]
        if pid_text.isdigit() and not _pid_alive(int(pid_text)):
            shutil.rmtree(entry, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
