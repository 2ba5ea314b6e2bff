"""Tokenizer conversion: llama.cpp must split text exactly as the `tokenizers` library does."""

from __future__ import annotations

import json

import pytest

import localai
from converters import convert
from converters.vocab import SPECIAL_KINDS, _merges, pre_tokenizer_name
from localai.demo_model import train_tokenizer, write_random_nemotron_h
from localai.errors import ConversionError
from tests import zoo

SMALL = {"hidden_size": 64, "hybrid_override_pattern": "M*-", "num_attention_heads": 2, "num_key_value_heads": 1,
         "head_dim": 32, "intermediate_size": 64, "mamba_num_heads": 2, "mamba_head_dim": 32,
         "ssm_state_size": 16, "n_groups": 1}


@pytest.mark.parametrize("style", list(zoo.TOKENIZER_STYLES))
def test_llama_cpp_tokenizes_like_tokenizers(style, tmp_path):
    tok = train_tokenizer(512, **zoo.TOKENIZER_STYLES[style])
    assert json.loads(tok.to_str())["model"]["merges"]
    _assert_llama_cpp_tokenizes_like(tok, style, tmp_path)


def test_a_tokenizer_without_merges_converts_and_tokenizes_the_same(tmp_path):
    """Byte-level BPE smaller than its alphabet has no merges at all (the demo model's tokenizer)."""
    tok = train_tokenizer(64, individual_digits=True)
    assert json.loads(tok.to_str())["model"]["merges"] == []
    _assert_llama_cpp_tokenizes_like(tok, "starcoder", tmp_path)


def _assert_llama_cpp_tokenizes_like(tok, style: str, tmp_path) -> None:
    folder = write_random_nemotron_h(tmp_path / "ckpt", tokenizer=tok, **SMALL)
    package = convert(str(folder), quant="f32", output=tmp_path / "pkg")
    assert package.manifest.tokenizer["pre"] == style
    model = localai.load(package.root, n_ctx=512)
    try:
        ids = model.backend.tokenize(zoo.MIXED_TEXT, add_bos=False, special=True)
        assert ids == tok.encode(zoo.MIXED_TEXT, add_special_tokens=False).ids
        text = b"".join(model.backend.token_bytes(t) for t in ids).decode("utf-8")
        assert text == zoo.MIXED_TEXT
        with_bos = model.backend.tokenize("hi", add_bos=True, special=False)
        assert with_bos[0] == tok.token_to_id("<s>")
    finally:
        model.close()


def test_think_tokens_stay_single_tokens_and_are_recorded(tmp_path):
    folder = write_random_nemotron_h(tmp_path / "ckpt", **SMALL)
    package = convert(str(folder), quant="f32", output=tmp_path / "pkg")
    thinking = package.manifest.thinking
    assert (thinking.start, thinking.end) == ("<think>", "</think>")
    model = localai.load(package.root)
    try:
        assert len(model.backend.tokenize("<think>", add_bos=False, special=False)) == 1
        assert len(model.backend.tokenize("</think>", add_bos=False, special=False)) == 1
    finally:
        model.close()


def test_unknown_pre_tokenizer_is_refused_with_its_shape():
    pre = {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": r"\d+|\w+"}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}
    with pytest.raises(ConversionError, match=r"no llama\.cpp pre-tokenizer splits"):
        pre_tokenizer_name(pre, ignore_merges=False)


def test_ignore_merges_selects_the_matching_llama3_variant():
    pre = {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": zoo.TOKENIZER_STYLES["llama-bpe"]["split"]}, "behavior": "Isolated",
         "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}
    assert pre_tokenizer_name(pre, ignore_merges=True) == "llama-bpe"
    assert pre_tokenizer_name(pre, ignore_merges=False) == "dbrx"


def test_merges_in_pair_form_become_gguf_strings():
    assert _merges([["a", "b"], "c d", ["e f", "g"]]) == ["a b", "c d", "e\u0120f g"]


def test_chat_template_file_takes_priority_like_transformers(tmp_path):
    from converters.vocab import read_hf_tokenizer

    folder = write_random_nemotron_h(tmp_path / "ckpt", **SMALL)
    assert "<|assistant|>" in read_hf_tokenizer(folder).chat_template
    (folder / "chat_template.jinja").write_text("{{ messages }}")
    assert read_hf_tokenizer(folder).chat_template == "{{ messages }}"


@pytest.mark.parametrize("name", ["nemotron_h", "llama", "qwen3", "nemotron3_moe", "demo"])
def test_reading_agrees_with_gguf_special_vocab_where_both_answer(name, checkpoint):
    """gguf-py's SpecialVocab reads the same files for llama.cpp's converter. Where it finds an answer,
    localai's reader (bounded reads, stricter refusals, a few more sources) finds the same one; the cases
    where the two differ on purpose are in docs/gguf-conversion.md."""
    import gguf

    from converters.vocab import UNREACHABLE_MERGE, read_hf_tokenizer
    from localai.cli.demo import checkpoint as demo_checkpoint

    folder = demo_checkpoint() if name == "demo" else checkpoint(name)
    ours = read_hf_tokenizer(folder)
    theirs = gguf.SpecialVocab(folder, load_merges=True, n_vocab=ours.size)
    assert ours.merges == (theirs.merges or [UNREACHABLE_MERGE])
    assert theirs.special_token_ids  # the comparison below compares something
    assert theirs.special_token_ids.keys() <= set(SPECIAL_KINDS)  # no sep/cls/mask in these decoders
    assert ours.special_ids == theirs.special_token_ids
    for kind in ("bos", "eos"):
        if kind in theirs.add_special_token:
            assert getattr(ours, f"add_{kind}") == theirs.add_special_token[kind], kind
    assert ours.chat_template == theirs.chat_template


def test_an_eos_list_in_config_json_is_read_where_special_vocab_finds_none(tmp_path):
    """Llama 3.x configs list several eos_token_ids; SpecialVocab takes only a single int, so without an
    eos_token in tokenizer_config.json llama.cpp's converter would write no EOS at all."""
    import gguf

    from converters.vocab import read_hf_tokenizer

    folder = write_random_nemotron_h(tmp_path / "ckpt", **SMALL)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    end = config.pop("eos_token")
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    ours = read_hf_tokenizer(folder)
    end_id, other = ours.id_of(end), ours.id_of("<s>")
    model_config = json.loads((folder / "config.json").read_text()) | {"eos_token_id": [end_id, other]}
    (folder / "config.json").write_text(json.dumps(model_config))
    ours = read_hf_tokenizer(folder)
    assert ours.special_ids["eos"] == end_id and ours.end_of_turn_ids[:2] == [end_id, other]
    assert "eos" not in gguf.SpecialVocab(folder, n_vocab=ours.size).special_token_ids
