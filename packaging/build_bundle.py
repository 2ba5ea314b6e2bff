"""Build an offline install bundle: the app, every dependency as a wheel, chosen model packages, an installer.

    python packaging/build_bundle.py -o BUNDLE [--model NAME ...] [--wheels .wheels] [--force]

Run it on a connected machine with the same OS, CPU architecture and Python version as the air-gapped
workstation (wheels are platform-specific). It needs pip and access to the package index; the
llama-cpp-python wheel is taken from --wheels (the one `make` builds into .wheels/), since that package
ships only as source and compiling it takes minutes. The result:

    BUNDLE/wheels/        localai and all its runtime dependencies, as wheels
    BUNDLE/models/*.tar   the chosen packages, as `localai export` writes them (hash-checked on import)
    BUNDLE/install.sh     sh install.sh [VENV]: a venv, `pip install --no-index`, `localai import` each model
    BUNDLE/README.txt     what is inside and what it was built for

The bundle is written into a temporary folder and renamed into place when complete.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

INSTALL_SH = """#!/bin/sh
# Install localai and the bundled models on this machine, with no network: sh install.sh [VENV]
# VENV defaults to ~/.local/share/localai-venv; PYTHON picks the interpreter (default python3).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
venv=${1:-"$HOME/.local/share/localai-venv"}
"${PYTHON:-python3}" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --no-index --find-links "$here/wheels" localai
for archive in "$here"/models/*.tar; do
    [ -e "$archive" ] || continue
    name=$(basename "$archive" .tar)
    if "$venv/bin/localai" info "$name" >/dev/null 2>&1; then
        echo "kept the installed $name (remove it with: localai rm $name, then run this again)"
    else
        "$venv/bin/localai" import "$archive"
    fi
done
echo "installed: $venv/bin/localai"
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, required=True, help="the bundle folder to create")
    parser.add_argument("--model", action="append", default=[], help="a package to include (store name or folder)")
    parser.add_argument("--wheels", type=Path, default=ROOT / ".wheels",
                        help="where the prebuilt llama-cpp-python wheel is (default: .wheels)")
    parser.add_argument("--force", action="store_true", help="replace an existing bundle folder")
    args = parser.parse_args()

    from localai import archive
    from localai.errors import LocalAIError
    from localai.model import resolve

    target = args.output.expanduser().absolute()
    if target.exists() and not args.force:
        sys.exit(f"error: {target} already exists (pass --force to replace it)")
    if target.exists() and not all((target / f).is_file() for f in ("install.sh", "README.txt")):
        sys.exit(f"error: {target} exists and is not a bundle; refusing to replace it")
    if not list(args.wheels.glob("llama_cpp_python-*.whl")):
        print(f"warning: no llama-cpp-python wheel in {args.wheels}; pip will compile it from source",
              file=sys.stderr)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.partial-"))
    except OSError as exc:
        sys.exit(f"error: cannot write into {target.parent}: {exc.strerror or exc}")
    try:
        (staging / "models").mkdir()
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(staging / "wheels"),
                        "--find-links", str(args.wheels), str(ROOT)], check=True)
        names = []
        for model in args.model:
            package = resolve(model)
            archive.export(package, staging / "models" / f"{package.manifest.name}.tar")
            names.append(package.manifest.name)
        install = staging / "install.sh"
        install.write_text(INSTALL_SH, encoding="utf-8")
        install.chmod(0o755)
        wheels = sorted(p.name for p in (staging / "wheels").glob("*.whl"))
        (staging / "README.txt").write_text(
            f"localai offline bundle\n\nbuilt for: {platform.system()} {platform.machine()}, "
            f"Python {platform.python_version()} ({sys.implementation.name})\n"
            f"install:   sh install.sh [VENV]   (no network needed)\n"
            f"models:    {', '.join(names) or 'none'}\n\nwheels:\n" + "".join(f"  {w}\n" for w in wheels),
            encoding="utf-8")
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    except (LocalAIError, subprocess.CalledProcessError, OSError) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        sys.exit(f"error: {exc}")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    print(f"bundle: {target} ({len(wheels)} wheels, {len(names)} model(s))")
    return 0


if __name__ == "__main__":
    sys.exit(main())
