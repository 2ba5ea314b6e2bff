"""Session fixtures: tiny checkpoints and their converted packages, each built once.

Every test gets its own empty store (`LOCALAI_HOME`), so nothing leaks between tests or to the user.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import zoo
from tests.server import Server

# A small random Nemotron-H layout (numpy-built, no torch): for CLI and error-path tests.
SMALL_NEMOTRON_H = {"hidden_size": 64, "hybrid_override_pattern": "M*-M", "num_attention_heads": 2,
                    "num_key_value_heads": 1, "head_dim": 32, "intermediate_size": 64, "mamba_num_heads": 2,
                    "mamba_head_dim": 32, "ssm_state_size": 16, "n_groups": 1}


@pytest.fixture(autouse=True)
def isolated_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "localai-home"
    monkeypatch.setenv("LOCALAI_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return home


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """checkpoint(name) -> folder of the ZOO checkpoint `name`, built on first use."""
    built: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in built:
            built[name] = zoo.build_checkpoint(name, tmp_path_factory.mktemp(f"ckpt-{name}"))
        return built[name]

    return get


@pytest.fixture(scope="session")
def package(tmp_path_factory: pytest.TempPathFactory, checkpoint: Callable[[str], Path]) -> Callable[[str, str], Path]:
    """package(name, quant) -> folder of that checkpoint converted to GGUF `quant`, built on first use."""
    from converters import convert

    built: dict[tuple[str, str], Path] = {}

    def get(name: str, quant: str) -> Path:
        key = (name, quant)
        if key not in built:
            out = tmp_path_factory.mktemp(f"pkg-{name}-{quant}") / "package"
            package_name = f"{name.replace('_', '-')}-{quant}"
            built[key] = convert(str(checkpoint(name)), quant=quant, output=out, name=package_name).root
        return built[key]

    return get


@pytest.fixture(scope="session")
def onnx_package(tmp_path_factory: pytest.TempPathFactory,
                 checkpoint: Callable[[str], Path]) -> Callable[..., Path]:
    """onnx_package(name, quant, flavor="ort") -> that checkpoint converted to ONNX, built on first use."""
    from converters import convert

    built: dict[tuple[str, str, str], Path] = {}

    def get(name: str, quant: str, flavor: str = "ort") -> Path:
        key = (name, quant, flavor)
        if key not in built:
            out = tmp_path_factory.mktemp(f"onnx-{name}-{quant}-{flavor}") / "package"
            built[key] = convert(str(checkpoint(name)), to="onnx", quant=quant, flavor=flavor, output=out,
                                 name=f"{name.replace('_', '-')}-onnx-{quant}-{flavor}").root
        return built[key]

    return get


@pytest.fixture(scope="module", params=["gguf", "onnx"])
def nemotron3_model(request: pytest.FixtureRequest, package: Callable[[str, str], Path],
                    onnx_package: Callable[..., Path]) -> Iterator[object]:
    """The Nemotron 3 MoE test model in float32, loaded on llama.cpp and on ONNX Runtime (once per module)."""
    import localai

    folder = package("nemotron3_moe", "f32") if request.param == "gguf" else onnx_package("nemotron3_moe", "fp32")
    loaded = localai.load(folder, n_ctx=2048)
    yield loaded
    loaded.close()


@pytest.fixture(scope="session")
def engine_package(tmp_path_factory: pytest.TempPathFactory,
                   checkpoint: Callable[[str], Path]) -> Callable[..., Path]:
    """engine_package(name, quant, capability=None) -> that checkpoint built into a TensorRT engine (on the CPU
    by TensorRT for RTX) for `capability`, by default 8.9 (nvfp4: 12.0); built on first use."""
    from converters import convert

    built: dict[tuple[str, str, int], Path] = {}

    def get(name: str, quant: str, capability: int | None = None) -> Path:
        target = capability or (120 if quant == "nvfp4" else 89)
        if (name, quant, target) not in built:
            out = tmp_path_factory.mktemp(f"trt-{name}-{quant}-{target}") / "package"
            built[(name, quant, target)] = convert(str(checkpoint(name)), to="tensorrt", quant=quant, output=out,
                                                   compute_capabilities=[target], max_context=zoo.ENGINE_MAX_CONTEXT,
                                                   max_prefill=zoo.ENGINE_MAX_PREFILL).root
        return built[(name, quant, target)]

    return get


@pytest.fixture(scope="session")
def demo_package(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, str], Path]:
    """demo_package(to, quant) -> the bundled, trained demo model converted to `to` / `quant`, built once."""
    from converters import convert
    from localai.cli.demo import checkpoint

    built: dict[tuple[str, str], Path] = {}

    def get(to: str, quant: str) -> Path:
        if (to, quant) not in built:
            out = tmp_path_factory.mktemp(f"demo-{to}-{quant}") / "package"
            built[(to, quant)] = convert(str(checkpoint()), to=to, quant=quant, output=out).root
        return built[(to, quant)]

    return get


@pytest.fixture(scope="session")
def reference() -> Iterator[Callable[[Path], object]]:
    """reference(folder) -> the transformers float32 model of a checkpoint, loaded once."""
    models: dict[Path, object] = {}

    def get(folder: Path) -> object:
        if folder not in models:
            models[folder] = zoo.reference_model(folder)
        return models[folder]

    yield get
    models.clear()


@pytest.fixture(scope="session")
def _small_checkpoint_master(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from localai.demo_model import write_random_nemotron_h

    return write_random_nemotron_h(tmp_path_factory.mktemp("small") / "small-nemotron-h", **SMALL_NEMOTRON_H)


@pytest.fixture
def small_checkpoint(_small_checkpoint_master: Path, tmp_path: Path) -> Path:
    """A private copy of a small random Nemotron-H checkpoint that a test may damage."""
    return Path(shutil.copytree(_small_checkpoint_master, tmp_path / "small-nemotron-h"))


@dataclass(frozen=True)
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capfd: pytest.CaptureFixture[str]) -> Callable[..., CliResult]:
    """cli(*args) runs `localai ARGS` in this process and returns exit code, stdout and stderr."""
    from localai.cli import main

    def run(*args: str) -> CliResult:
        capfd.readouterr()
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse
            code = int(exc.code or 0)
        out, err = capfd.readouterr()
        return CliResult(code, out, err)

    return run


_CONVERT_REPORTING_PEAK = """
import json, sys
from pathlib import Path
from converters import convert
convert(sys.argv[1], output=Path(sys.argv[2]), **json.loads(sys.argv[3]))
# the peak of this process's own memory: ru_maxrss would keep the parent's size from before exec
print(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:")))
"""


def convert_peak_rss_mb(source: Path, output: Path, **options: object) -> float:
    """Peak resident memory (MiB) of converting `source` to `output` with `options` in a child process."""
    import json

    result = subprocess.run([sys.executable, "-c", _CONVERT_REPORTING_PEAK, str(source), str(output),
                             json.dumps(options)], capture_output=True, text=True, check=True)
    return int(result.stdout.split()[-1]) / 1024


def run_localai(*args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    """`localai ARGS` in a child process (for signals and process-level behaviour)."""
    return subprocess.run([sys.executable, "-m", "localai.cli", *args], capture_output=True, text=True, check=False,
                          **kwargs)  # type: ignore[call-overload]


@pytest.fixture(scope="session")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Server]]:
    """serve(*args) -> a running `localai serve ARGS` (the same args: the same server)."""
    servers: dict[tuple[str, ...], Server] = {}
    home = tmp_path_factory.mktemp("serve-home")

    def get(*args: str) -> Server:
        if args not in servers:
            servers[args] = Server(args, home)
        return servers[args]

    yield get
    for server in servers.values():
        server.stop()
