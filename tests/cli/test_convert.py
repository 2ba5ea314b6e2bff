"""`localai convert`: packages, and every kind of bad input as one line on stderr with nothing left over."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from localai.package import file_sha256
from localai.store import models_dir
from tests.conftest import run_localai


def _assert_clean_failure(result, *, fragment: str, leftovers: list[Path] | None = None) -> None:
    assert result.code != 0
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("error: ")
    assert fragment in lines[0]
    assert "Traceback" not in result.err
    store = models_dir()
    assert not store.exists() or not any(store.iterdir()), list(store.iterdir())
    for path in leftovers or []:
        assert not path.exists()


def test_convert_into_store_writes_manifest_with_hashes(cli, small_checkpoint):
    result = cli("convert", str(small_checkpoint), "--quant", "f16", "--json")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    root = Path(report["package"])
    manifest = json.loads((root / "manifest.json").read_text())
    assert root.parent == models_dir()
    assert manifest == report["manifest"]
    assert manifest["schema_version"] == 1
    assert manifest["name"] == "small-nemotron-h-f16"
    assert manifest["architecture"] == "nemotron_h"
    [artifact] = manifest["artifacts"]
    assert artifact["format"] == "gguf" and artifact["quant"] == "f16"
    assert artifact["sha256"] == file_sha256(root / artifact["path"])
    assert artifact["bytes"] == (root / artifact["path"]).stat().st_size
    inputs = {f["path"]: f["sha256"] for f in manifest["source"]["files"]}
    assert inputs["model.safetensors"] == file_sha256(small_checkpoint / "model.safetensors")
    assert inputs["config.json"] == file_sha256(small_checkpoint / "config.json")
    assert manifest["source"]["kind"] == "local"
    assert manifest["thinking"] == {"start": "<think>", "end": "</think>"}
    assert manifest["chat_template"] and "<|assistant|>" in manifest["chat_template"]
    assert manifest["generation_defaults"] == {"temperature": 0.6, "top_p": 0.95}
    assert manifest["tokenizer"]["eos_token"] == "<|end|>"
    assert manifest["context_length"] == 4096
    assert sorted(os.listdir(root)) == sorted(["manifest.json", artifact["path"]])


def test_llama_cpp_quantized_type_leaves_no_intermediate(cli, small_checkpoint, tmp_path):
    out = tmp_path / "out" / "pkg"
    result = cli("convert", str(small_checkpoint), "--quant", "Q4_K_M", "-o", str(out), "--name", "tiny")
    assert result.code == 0, result.err
    assert sorted(os.listdir(out)) == ["manifest.json", "tiny.gguf"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["artifacts"][0]["quant"] == "q4_k_m"
    assert [p.name for p in out.parent.iterdir()] == ["pkg"]


def test_existing_package_is_kept_unless_forced(cli, small_checkpoint, tmp_path):
    out = tmp_path / "out" / "pkg"
    assert cli("convert", str(small_checkpoint), "-o", str(out)).code == 0
    first = (out / "manifest.json").read_text()
    again = cli("convert", str(small_checkpoint), "-o", str(out))
    assert again.code == 1 and "already exists" in again.err
    assert (out / "manifest.json").read_text() == first
    forced = cli("convert", str(small_checkpoint), "-o", str(out), "--quant", "q8_0", "--force")
    assert forced.code == 0, forced.err
    assert json.loads((out / "manifest.json").read_text())["artifacts"][0]["quant"] == "q8_0"
    assert [p.name for p in out.parent.iterdir()] == ["pkg"]


def test_missing_config(cli, small_checkpoint):
    (small_checkpoint / "config.json").unlink()
    _assert_clean_failure(cli("convert", str(small_checkpoint)), fragment="config.json not found")


def test_garbled_config(cli, small_checkpoint):
    (small_checkpoint / "config.json").write_text('{"model_type": "nemotron_h", ')
    _assert_clean_failure(cli("convert", str(small_checkpoint)), fragment="config.json is not valid JSON")


@pytest.mark.parametrize("to", ["gguf", "onnx"])
def test_unknown_model_type_names_supported_ones(cli, small_checkpoint, to):
    config = json.loads((small_checkpoint / "config.json").read_text())
    (small_checkpoint / "config.json").write_text(json.dumps(config | {"model_type": "gpt_neox"}))
    _assert_clean_failure(cli("convert", str(small_checkpoint), "--to", to),
                          fragment="supported: llama, mistral, nemotron_h")


@pytest.mark.parametrize(("change", "fragment"), [
    ({"model_type": ["nemotron_h"]}, "unsupported model_type ['nemotron_h']"),
    ({"max_position_embeddings": 2**40}, "'max_position_embeddings' is out of range"),
    ({"layer_norm_epsilon": float("nan")}, "'layer_norm_epsilon' must be a finite number, got nan"),
    ({"layer_norm_epsilon": -1e-5}, "'layer_norm_epsilon' must be positive"),
    ({"layer_norm_epsilon": "1e-5"}, "'layer_norm_epsilon' must be a finite number, got '1e-5'"),
    ({"layers_block_type": [["mamba"]] * 1000, "hybrid_override_pattern": None}, "unknown layers_block_type"),
    ({"hybrid_override_pattern": "M" * 50_000, "num_hidden_layers": 50_000}, "declares 50000 layers"),
    ({"mamba_head_dim": 10**30}, "'mamba_head_dim' is out of range (1000000000000000000000000000000; at most"),
])
def test_hostile_config_values_are_one_line(cli, small_checkpoint, change, fragment):
    config = json.loads((small_checkpoint / "config.json").read_text())
    (small_checkpoint / "config.json").write_text(json.dumps(config | change))
    _assert_clean_failure(cli("convert", str(small_checkpoint)), fragment=fragment)


_CONVERT_IN_A_BOUND = """
import resource, sys
resource.setrlimit(resource.RLIMIT_DATA, (int(sys.argv[2]) << 20,) * 2)
from localai.cli import main
sys.exit(main(["convert", sys.argv[1]]))
"""


def test_a_config_declaring_a_million_layers_is_refused_within_a_memory_bound(small_checkpoint, isolated_store):
    """The layer count is checked before any per-layer work: within 300 MB of data segment (the issue's 1 MB
    config exhausted memory), in a child under setrlimit."""
    config = json.loads((small_checkpoint / "config.json").read_text())
    (small_checkpoint / "config.json").write_text(json.dumps(config | {
        "hybrid_override_pattern": None, "layers_block_type": ["mamba"] * 10**6, "num_hidden_layers": 10**6}))
    result = subprocess.run([sys.executable, "-c", _CONVERT_IN_A_BOUND, str(small_checkpoint), "300"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip() == ("error: config.json declares 1000000 layers; localai converts at most 512 "
                                     "(llama.cpp's limit, an MTP head included)")


_CONVERT_ON_A_FULL_DISK = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # past the limit a write fails (EFBIG) or stops short
resource.setrlimit(resource.RLIMIT_FSIZE, (200_000,) * 2)
from localai.cli import main
sys.exit(main(["convert", sys.argv[1], "--to", sys.argv[2]]))
"""


@pytest.mark.parametrize("to", ["gguf", "onnx"])
def test_a_full_disk_is_one_line_and_leaves_nothing(small_checkpoint, isolated_store, to):
    """A full disk, as the file-size limit of a child process: no file may grow past 200 kB."""
    result = subprocess.run([sys.executable, "-c", _CONVERT_ON_A_FULL_DISK, str(small_checkpoint), to],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot write the package"), result.stderr
    store = models_dir()
    assert not store.exists() or [p.name for p in store.iterdir()] in ([], [".lock"])


def test_moe_layers_without_expert_settings_are_refused(cli, small_checkpoint):
    config = json.loads((small_checkpoint / "config.json").read_text())
    (small_checkpoint / "config.json").write_text(json.dumps(config | {"hybrid_override_pattern": "M*EM"}))
    _assert_clean_failure(cli("convert", str(small_checkpoint)), fragment="config.json lacks 'n_routed_experts'")


def test_truncated_safetensors(cli, small_checkpoint):
    weights = small_checkpoint / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    _assert_clean_failure(cli("convert", str(small_checkpoint)), fragment="is truncated")


def test_corrupt_safetensors_header(cli, small_checkpoint):
    weights = small_checkpoint / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[8:40] = b"\x00garbage garbage garbage garbage"
    weights.write_bytes(bytes(data))
    _assert_clean_failure(cli("convert", str(small_checkpoint)), fragment="corrupt safetensors header")


def test_tensor_shape_disagreeing_with_config(cli, small_checkpoint):
    config = json.loads((small_checkpoint / "config.json").read_text())
    (small_checkpoint / "config.json").write_text(json.dumps(config | {"intermediate_size": 96}))
    _assert_clean_failure(cli("convert", str(small_checkpoint)), fragment="but config.json implies [96, 64]")


def test_missing_tokenizer(cli, small_checkpoint):
    (small_checkpoint / "tokenizer.json").unlink()
    _assert_clean_failure(cli("convert", str(small_checkpoint)), fragment="missing tokenizer")


def test_pickled_weights_are_refused(cli, small_checkpoint):
    (small_checkpoint / "model.safetensors").rename(small_checkpoint / "pytorch_model.bin")
    _assert_clean_failure(cli("convert", str(small_checkpoint)), fragment="never unpickles")


def test_unwritable_output_folder(cli, small_checkpoint, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    _assert_clean_failure(cli("convert", str(small_checkpoint), "-o", str(blocker / "pkg")),
                          fragment="cannot write to")


def test_unknown_quant_lists_valid_types(cli, small_checkpoint):
    result = cli("convert", str(small_checkpoint), "--quant", "q9_9")
    _assert_clean_failure(result, fragment="unknown GGUF type 'q9_9'")
    assert "q4_k_m" in result.err and "f16" in result.err and "iq4_nl" in result.err


def test_missing_source(cli, tmp_path):
    _assert_clean_failure(cli("convert", str(tmp_path / "nowhere")), fragment="no checkpoint folder")


def test_a_repo_id_that_is_not_cached_shows_the_download_form(cli):
    result = cli("convert", "nobody/no-such-model")
    _assert_clean_failure(result, fragment="no Hugging Face repo nobody/no-such-model in the local cache")
    assert "localai convert hf:nobody/no-such-model" in result.err


def test_usage_errors_are_one_line(cli):
    result = cli("convert")
    assert result.code == 2
    assert len(result.err.strip().splitlines()) == 1 and result.err.startswith("error: ")


def test_debug_shows_the_traceback(cli, small_checkpoint):
    (small_checkpoint / "config.json").unlink()
    result = cli("convert", str(small_checkpoint), "--debug")
    assert result.code == 1
    assert "Traceback" in result.err and "config.json not found" in result.err


@pytest.mark.parametrize(("to", "quant"), [("gguf", "f32"), ("onnx", "fp32")])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_mid_conversion_leaves_nothing(sig, to, quant, tmp_path):
    _interrupt_mid_conversion(sig, to, quant, tmp_path, "")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_while_llama_cpp_quantizes_leaves_nothing(sig, tmp_path):
    """llama.cpp's quantizer runs in a child process: its log callback cannot swallow the signal."""
    _interrupt_mid_conversion(sig, "gguf", "q4_k_m", tmp_path, "quantizing")


def _interrupt_mid_conversion(sig: int, to: str, quant: str, tmp_path: Path, phase: str) -> None:
    from localai.demo_model import write_random_nemotron_h

    # large enough (about 100 MB of float32) that the signal lands while the package is being written
    folder = write_random_nemotron_h(tmp_path / "ckpt", hidden_size=512, hybrid_override_pattern="M*-M-M-M-M-M-",
                                     intermediate_size=2048, mamba_head_dim=128)
    home = tmp_path / "home"
    # a shell starts background jobs with SIGINT ignored, and the child would inherit that: give it the default
    proc = subprocess.Popen([sys.executable, "-m", "localai.cli", "convert", str(folder), "--to", to, "--quant", quant],
                            env={**os.environ, "LOCALAI_HOME": str(home)}, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    store = home / "models"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (store.exists() and any(store.iterdir())):
        time.sleep(0.002)
    while phase and time.monotonic() < deadline and not any(p.name.endswith(".gguf") and p.name[0] != "."
                                                            for p in store.glob(".*/*")):
        time.sleep(0.002)  # until the quantizer has created its output
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, err
    assert err.strip() == ("interrupted" if sig == signal.SIGINT else "terminated")
    assert list(store.iterdir()) == []


def test_cli_entry_point_runs_in_a_child_process(small_checkpoint, tmp_path):
    result = run_localai("convert", str(small_checkpoint), "-o", str(tmp_path / "pkg"), "--json",
                         env={**os.environ, "LOCALAI_HOME": str(tmp_path / "home")})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["manifest"]["name"] == "small-nemotron-h-f16"
    assert result.stderr == ""


def test_force_never_deletes_a_folder_that_is_not_a_package(cli, small_checkpoint, tmp_path):
    user = tmp_path / "my-documents"
    (user / "sub").mkdir(parents=True)
    (user / "thesis.tex").write_text("precious")
    result = cli("convert", str(small_checkpoint), "-o", str(user), "--force")
    assert result.code == 1 and "not a model package" in result.err
    assert (user / "thesis.tex").read_text() == "precious" and (user / "sub").is_dir()
    into_source = cli("convert", str(small_checkpoint), "-o", str(small_checkpoint.parent), "--force")
    assert into_source.code == 1 and "checkpoint folder" in into_source.err
    assert (small_checkpoint / "config.json").is_file()


def test_sliding_window_mistral_is_refused(cli, small_checkpoint):
    llama_like = {"model_type": "mistral", "vocab_size": 512, "hidden_size": 64, "num_hidden_layers": 1,
                  "num_attention_heads": 2, "intermediate_size": 64, "max_position_embeddings": 32768,
                  "sliding_window": 4096}
    (small_checkpoint / "config.json").write_text(json.dumps(llama_like))
    _assert_clean_failure(cli("convert", str(small_checkpoint)), fragment="sliding-window attention (window 4096)")


def test_duplicate_weight_files_beside_the_transformers_layout_are_ignored(cli, small_checkpoint, tmp_path):
    import shutil

    shutil.copy(small_checkpoint / "model.safetensors", small_checkpoint / "consolidated.safetensors")
    result = cli("convert", str(small_checkpoint), "-o", str(tmp_path / "pkg"), "--json")
    assert result.code == 0, result.err
    files = [f["path"] for f in json.loads(result.out)["manifest"]["source"]["files"]]
    assert "consolidated.safetensors" not in files and "model.safetensors" in files


def test_types_needing_an_importance_matrix_are_not_offered(cli, small_checkpoint):
    from converters.to_gguf import output_types

    assert "iq2_m" not in output_types() and "all_f32" not in output_types()
    _assert_clean_failure(cli("convert", str(small_checkpoint), "--quant", "iq2_m"), fragment="unknown GGUF type")


def test_package_names_are_validated(cli, small_checkpoint):
    for name in ("demo\n", "../escape", "UPPER", "-dash"):
        _assert_clean_failure(cli("convert", str(small_checkpoint), f"--name={name}"), fragment="invalid package name")


@pytest.mark.parametrize(("to", "half", "wide"), [("gguf", "f16", "bf16"), ("onnx", "fp16", "fp32")])
def test_float16_overflow_is_refused(cli, small_checkpoint, to, half, wide):
    from safetensors.numpy import load_file, save_file

    weights = load_file(str(small_checkpoint / "model.safetensors"))
    weights["backbone.layers.0.mixer.out_proj.weight"][0, 0] = 1e6
    save_file(weights, str(small_checkpoint / "model.safetensors"))
    _assert_clean_failure(cli("convert", str(small_checkpoint), "--to", to, "--quant", half),
                          fragment="beyond float16's range")
    assert cli("convert", str(small_checkpoint), "--to", to, "--quant", wide).code == 0


def test_onnx_package_holds_graph_weights_tokenizer_and_state_description(cli, small_checkpoint):
    result = cli("convert", str(small_checkpoint), "--to", "onnx", "--json")
    assert result.code == 0, result.err
    root = Path(json.loads(result.out)["package"])
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["name"] == "small-nemotron-h-onnx-fp32"
    assert [(a["path"], a["format"], a["quant"]) for a in manifest["artifacts"]] == [
        ("model.onnx", "onnx", "fp32"), ("model.onnx.data", "onnx-data", "fp32"), ("tokenizer.json", "tokenizer", ""),
        ("tokenizer_config.json", "tokenizer", "")]
    for artifact in manifest["artifacts"]:
        assert artifact["sha256"] == file_sha256(root / artifact["path"])
    assert sorted(os.listdir(root)) == ["manifest.json", "model.onnx", "model.onnx.data", "tokenizer.json",
                                        "tokenizer_config.json"]
    names = [spec["name"] for spec in manifest["graph"]["inputs"]]
    # SMALL_NEMOTRON_H is M * - M: conv + ssm for layers 0 and 3, key + value for layer 1 (in the ort
    # flavour one buffer each for past and present, with the tokens in them as `past_length`)
    assert names == ["input_ids", "logits_to_keep", "past.0.conv", "past.0.ssm", "past.1.key", "past.1.value",
                     "past_length", "past.3.conv", "past.3.ssm"]
    assert manifest["graph"]["flavor"] == "ort" and manifest["graph"]["opset"] == 23  # RMSNormalization
    assert manifest["converter"]["onnxruntime"]


@pytest.mark.parametrize(("option", "fragment"), [
    (["--quant", "q4_k_m"], "unknown ONNX quantization 'q4_k_m'; available: fp32, fp16, int8, int4"),
    (["--quant", "int4", "--flavor", "tensorrt"], "unknown ONNX flavour 'tensorrt'; available: ort, portable"),
    (["--quant", "int4", "--block-size", "24"], "block size must be a power of two"),
])
def test_bad_onnx_options_are_one_line_and_leave_nothing(cli, small_checkpoint, option, fragment):
    _assert_clean_failure(cli("convert", str(small_checkpoint), "--to", "onnx", *option), fragment=fragment)


def test_unknown_output_format_names_the_available_ones(cli, small_checkpoint):
    _assert_clean_failure(cli("convert", str(small_checkpoint), "--to", "openvino"),
                          fragment="unknown output format 'openvino'; available: gguf, onnx, tensorrt")


def test_onnx_options_are_refused_for_gguf(cli, small_checkpoint):
    _assert_clean_failure(cli("convert", str(small_checkpoint), "--flavor", "portable"),
                          fragment="--flavor and --block-size apply to --to onnx and tensorrt only")


def test_portable_packages_are_named_apart_from_ort_ones(cli, small_checkpoint):
    for flavor in ("ort", "portable"):
        assert cli("convert", str(small_checkpoint), "--to", "onnx", "--quant", "int4", "--flavor", flavor).code == 0
    assert sorted(p.name for p in models_dir().iterdir() if p.name != ".lock") == ["small-nemotron-h-onnx-int4",
                                                              "small-nemotron-h-onnx-int4-portable"]
