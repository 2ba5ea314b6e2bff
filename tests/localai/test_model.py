"""Loading models in every form the runtime accepts, and the backend's guard rails."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

import localai
from converters import convert
from localai.errors import BackendError, PackageError
from localai.events import Final, Notice


def test_load_by_folder_manifest_store_name_and_bare_gguf(package, tmp_path, isolated_store):
    folder = package("nemotron_h", "q8_0")
    gguf_file = next(folder.glob("*.gguf"))
    shutil.copytree(folder, isolated_store / "models" / "my-model")
    tokens = [5, 17, 99, 3]
    results = []
    for ref in (folder, folder / "manifest.json", "my-model", gguf_file):
        model = localai.load(ref)
        assert model.manifest.architecture == "nemotron_h"
        assert model.format.thinking is not None and model.format.thinking.start == "<think>"
        assert "<|assistant|>" in model.manifest.chat_template
        results.append(model.backend.logits(tokens))
        model.close()
    for other in results[1:]:
        np.testing.assert_array_equal(results[0], other)
    bare = localai.model.resolve(gguf_file).manifest
    assert bare.name == gguf_file.stem and bare.artifacts[0].quant == "q8_0"
    assert bare.tokenizer["bos_token"] == "<s>" and bare.tokenizer["add_bos"] is True


def test_hybrid_context_defaults_to_a_sane_size(package, small_checkpoint, tmp_path):
    model = localai.load(package("nemotron_h", "f16"))
    assert model.manifest.context_length == 2048  # max_position_embeddings of this checkpoint
    assert model.backend.n_ctx == 2048
    model.close()
    assert localai.load(package("nemotron_h", "f16"), n_ctx=300).backend.n_ctx == 300
    config = json.loads((small_checkpoint / "config.json").read_text())
    (small_checkpoint / "config.json").write_text(json.dumps(config | {"max_position_embeddings": 2**20}))
    huge = convert(str(small_checkpoint), quant="q8_0", output=tmp_path / "huge")
    model = localai.load(huge.root)
    assert (model.manifest.context_length, model.backend.n_ctx) == (2**20, 4096)
    model.close()
    with pytest.raises(BackendError, match="must be positive"):
        localai.load(huge.root, n_ctx=0)


def test_model_without_chat_template_uses_the_fallback_and_says_so(small_checkpoint, tmp_path):
    config = json.loads((small_checkpoint / "tokenizer_config.json").read_text())
    del config["chat_template"]
    (small_checkpoint / "tokenizer_config.json").write_text(json.dumps(config))
    package = convert(str(small_checkpoint), quant="f16", output=tmp_path / "pkg")
    model = localai.load(next(package.root.glob("*.gguf")))
    assert model.manifest.chat_template is None
    assert model.render([{"role": "user", "content": "hello"}]) == "User: hello\nAssistant:"
    events = list(model.stream_chat([{"role": "user", "content": "hello"}], max_tokens=4, think=False))
    notices = [e.text for e in events if isinstance(e, Notice)]
    assert len(notices) == 1 and "no chat template" in notices[0]
    assert isinstance(events[-1], Final)
    again = list(model.stream_chat([{"role": "user", "content": "hello"}], max_tokens=4, think=False))
    assert not [e for e in again if isinstance(e, Notice)]  # said once per loaded model
    model.close()


def test_backend_refuses_bad_token_ids_and_context_overflow(package):
    model = localai.load(package("llama", "f16"), n_ctx=16)
    backend = model.backend
    with pytest.raises(BackendError, match="outside the vocabulary"):
        backend.eval([backend.n_vocab])
    with pytest.raises(BackendError, match="outside the vocabulary"):
        backend.token_bytes(-1)
    backend.reset()
    backend.eval(list(range(10)))
    with pytest.raises(BackendError, match="context full"):
        backend.eval(list(range(7)))
    prompt = "".join(backend.token_bytes(t).decode() for t in range(30, 42))
    final = model.complete(prompt, max_tokens=50, temperature=0)
    # the rest of the context fills up; one more token is still sampled from the last logits
    assert final.usage.prompt_tokens + final.usage.completion_tokens == 16 + 1
    assert final.finish_reason == "length"
    model.close()


def test_truncated_or_escaping_artifacts_are_refused(package, tmp_path):
    copy = shutil.copytree(package("llama", "f16"), tmp_path / "copy")
    artifact = next(copy.glob("*.gguf"))
    artifact.write_bytes(artifact.read_bytes()[:-100])
    with pytest.raises(PackageError, match="incomplete or corrupt"):
        localai.load(copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["artifacts"][0]["path"] = "../../etc/passwd"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(PackageError, match="is not a plain path in the package"):
        localai.load(copy)
    manifest["artifacts"][0]["path"] = "linked.gguf"  # a plain name, but a link out of the package
    (copy / "linked.gguf").symlink_to(tmp_path / "elsewhere.gguf")
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(PackageError, match="leaves the package"):
        localai.load(copy)


def test_missing_artifact_and_unknown_model(package, tmp_path):
    broken = shutil.copytree(package("llama", "f16"), tmp_path / "broken")
    for gguf_file in broken.glob("*.gguf"):
        gguf_file.unlink()
    with pytest.raises(PackageError, match="lacks its artifact"):
        localai.load(broken)
    with pytest.raises(PackageError, match="no model 'nothing-here'"):
        localai.load("nothing-here")


def test_runtime_and_converter_never_import_torch_or_transformers(small_checkpoint, tmp_path):
    code = (
        "import sys, pathlib, localai\n"
        "from converters import convert\n"
        f"package = convert({str(small_checkpoint)!r}, quant='q8_0', output=pathlib.Path({str(tmp_path / 'p')!r}))\n"
        "model = localai.load(package.root)\n"
        "model.chat([{'role': 'user', 'content': 'hello'}], max_tokens=3)\n"
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_odd_metadata_in_a_bare_gguf_does_not_refuse_it(tmp_path):
    import gguf

    path = tmp_path / "odd.gguf"
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_uint32("general.file_type", 9999)
    writer.add_string("llama.context_length", "lots")
    writer.add_uint32("tokenizer.ggml.bos_token_id", 10**6)
    writer.add_uint32("tokenizer.chat_template", 3)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    manifest = localai.model.resolve(path).manifest
    assert (manifest.artifacts[0].quant, manifest.context_length) == ("unknown", 4096)
    assert manifest.tokenizer["bos_token"] is None and manifest.chat_template is None
