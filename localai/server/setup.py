"""From the command line's choices to a running app: which packages are offered, how they load."""

from __future__ import annotations

from fastapi import FastAPI

from localai import store
from localai.errors import LocalAIError
from localai.model import Model, load, resolve
from localai.package import Package
from localai.server.app import Security, create_app
from localai.server.catalog import Catalog
from localai.server.service import Limits, Service


def offered_packages(refs: list[str]) -> dict[str, Package]:
    """The packages `refs` name (anything `localai run` takes), or every package in the store, by name."""
    packages = [resolve(ref) for ref in refs] if refs else store.packages()
    if not packages:
        raise LocalAIError("the store has no packages to serve: convert or pull one, or name a package")
    by_name: dict[str, Package] = {}
    for package in packages:
        name = package.manifest.name
        if name in by_name and by_name[name].root != package.root:
            raise LocalAIError(f"two models are named {name!r} ({by_name[name].root} and {package.root})")
        by_name[name] = package
    return by_name


def build_app(packages: dict[str, Package], *, api_key: str | None = None, cors_origins: tuple[str, ...] = (),
              n_ctx: int | None = None, n_threads: int | None = None, device: str = "auto",
              keep_alive: float = 300.0, max_loaded: int = 1, parallel: int = 1, turn_snapshots: int = 8,
              limits: Limits | None = None) -> FastAPI:
    def load_one(package: Package) -> Model:
        return load(package, n_ctx=n_ctx, n_threads=n_threads, device=device, turn_snapshots=turn_snapshots)

    catalog = Catalog(packages, load_one, parallel=parallel, max_loaded=max_loaded, keep_alive=keep_alive)
    reap_seconds = min(5.0, max(0.1, keep_alive / 2))  # an idle model goes within half its keep-alive
    return create_app(Service(catalog, limits or Limits()), Security(api_key, cors_origins), reap_seconds)
