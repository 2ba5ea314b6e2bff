"""`localai ls / info / rm / verify / export / import`: the store and portable packages."""

from __future__ import annotations

import io
import json
import shutil
import tarfile

import pytest

from localai.store import models_dir
from tests import zoo


@pytest.fixture
def stored(cli, small_checkpoint):
    """Convert the small checkpoint into the (per-test) store as `small-f16`; returns its folder."""
    result = cli("convert", str(small_checkpoint), "--name", "small-f16")
    assert result.code == 0, result.err
    return models_dir() / "small-f16"


@pytest.fixture
def stored_onnx(cli, small_checkpoint):
    result = cli("convert", str(small_checkpoint), "--to", "onnx", "--quant", "int4", "--name", "small-onnx")
    assert result.code == 0, result.err
    return models_dir() / "small-onnx"


def _one_line_error(result, fragment):
    assert result.code == 1, result.out
    assert fragment in result.err and len(result.err.strip().splitlines()) == 1, result.err


def test_ls_empty_then_listed(cli, stored, stored_onnx):
    shutil.rmtree(models_dir() / "small-onnx")  # ls on a store that has something, then JSON
    listed = cli("ls")
    assert listed.code == 0 and "small-f16" in listed.out and "nemotron_h" in listed.out and "gguf" in listed.out
    rows = json.loads(cli("ls", "--json").out)
    assert [(r["name"], r["format"], r["quant"]) for r in rows] == [("small-f16", "gguf", "f16")]
    assert rows[0]["bytes"] == (stored / "small-f16.gguf").stat().st_size


def test_ls_on_an_empty_store(cli):
    result = cli("ls")
    assert result.code == 0 and "no packages" in result.out


def test_info_text_and_json(cli, stored):
    text = cli("info", "small-f16")
    assert text.code == 0 and "architecture" in text.out and "small-f16.gguf" in text.out
    manifest = json.loads(cli("info", "small-f16", "--json").out)
    assert manifest == json.loads((stored / "manifest.json").read_text())


def test_rm(cli, stored):
    result = cli("rm", "small-f16")
    assert result.code == 0 and not stored.exists()
    assert list(models_dir().iterdir()) == [models_dir() / ".lock"]  # nothing half-deleted left behind
    _one_line_error(cli("rm", "small-f16"), "no package named 'small-f16'")
    _one_line_error(cli("rm", "../etc"), "invalid package name")


def test_verify_passes_then_finds_each_kind_of_damage(cli, stored_onnx):
    ok = cli("verify", "small-onnx")
    assert ok.code == 0 and "all 4 files match" in ok.err  # graph, weights, 2 tokenizer files
    data = stored_onnx / "model.onnx.data"
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    data.write_bytes(bytes(raw))
    (stored_onnx / "tokenizer_config.json").unlink()
    (stored_onnx / "notes.txt").write_text("not in the manifest")
    with (stored_onnx / "model.onnx").open("ab") as fh:
        fh.write(b"\0")
    result = cli("verify", "small-onnx")
    _one_line_error(result, "is damaged: 4 of 5 files fail")
    lines = dict(line.split(None, 1) for line in result.out.splitlines())
    assert lines["HASH"].startswith("model.onnx.data") and lines["MISSING"].startswith("tokenizer_config.json")
    assert lines["SIZE"].startswith("model.onnx") and lines["UNLISTED"].startswith("notes.txt")


def test_export_import_round_trip(cli, stored, tmp_path, monkeypatch):
    archive = tmp_path / "small.tar"
    exported = cli("export", "small-f16", "-o", str(archive))
    assert exported.code == 0, exported.err
    with tarfile.open(archive) as tar:
        assert sorted(tar.getnames()) == ["small-f16/manifest.json", "small-f16/small-f16.gguf"]
    _one_line_error(cli("export", "small-f16", "-o", str(archive)), "already exists")

    monkeypatch.setenv("LOCALAI_HOME", str(tmp_path / "elsewhere"))  # another machine's store
    imported = cli("import", str(archive))
    assert imported.code == 0, imported.err
    assert cli("verify", "small-f16").code == 0
    renamed = cli("import", str(archive), "--name", "copy-of-small")
    assert renamed.code == 0, renamed.err
    assert json.loads(cli("info", "copy-of-small", "--json").out)["name"] == "copy-of-small"
    _one_line_error(cli("import", str(archive)), "already exists")
    ran = cli("run", "copy-of-small", "--prompt", "hi", "--max-tokens", "4", "--temperature", "0")
    assert ran.code == 0, ran.err


def test_export_refuses_a_damaged_package(cli, stored, tmp_path):
    (stored / "small-f16.gguf").write_bytes(b"GGUF")
    _one_line_error(cli("export", "small-f16", "-o", str(tmp_path / "x.tar")), "does not match its manifest")
    assert not list(tmp_path.glob("*.tar")) and not list(tmp_path.glob(".*"))


def _nothing_installed():
    models = models_dir()
    return not models.exists() or [p.name for p in models.iterdir()] in ([], [".lock"])


@pytest.fixture
def archive(cli, stored, tmp_path, monkeypatch):
    """A good export of small-f16; the store is emptied afterwards, ready for import tests."""
    path = tmp_path / "good.tar"
    assert cli("export", "small-f16", "-o", str(path)).code == 0
    monkeypatch.setenv("LOCALAI_HOME", str(tmp_path / "fresh"))
    return path


def test_a_tampered_archive_installs_nothing(cli, archive):
    raw = bytearray(archive.read_bytes())
    raw[-20_000] ^= 0x40  # inside the GGUF's tensor data (the tar ends with 1 KiB of zero blocks)
    archive.write_bytes(bytes(raw))
    _one_line_error(cli("import", str(archive)), "does not match its manifest (small-f16.gguf: hash)")
    assert _nothing_installed()


def test_a_truncated_archive_installs_nothing(cli, archive):
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    _one_line_error(cli("import", str(archive)), "is not a readable uncompressed package archive")
    assert _nothing_installed()


def _rewrite(archive, extra: tarfile.TarInfo, data: bytes = b""):
    """Copy `archive` with one more member."""
    with tarfile.open(archive) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    with tarfile.open(archive, "w") as tar:
        for member, content in members:
            tar.addfile(member, io.BytesIO(content))
        tar.addfile(extra, io.BytesIO(data) if extra.isfile() else None)


@pytest.mark.parametrize("member", ["../evil.sh", "/etc/evil", "small-f16/../../evil"])
def test_path_traversal_is_refused(cli, archive, member, tmp_path):
    info = tarfile.TarInfo(member)
    info.size = 4
    _rewrite(archive, info, b"evil")
    _one_line_error(cli("import", str(archive)), "path outside its folder")
    assert _nothing_installed() and not (tmp_path / "evil.sh").exists()


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.FIFOTYPE, tarfile.CHRTYPE])
def test_links_and_special_files_are_refused(cli, archive, kind):
    info = tarfile.TarInfo("small-f16/extra")
    info.type = kind
    info.linkname = "/etc/passwd"
    _rewrite(archive, info)
    result = cli("import", str(archive))
    _one_line_error(result, "link" if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE) else "special file")
    assert _nothing_installed()


def test_a_sparse_member_is_refused_before_it_expands(cli, archive, tmp_path):
    """A member in GNU's sparse format of 1 KiB of archive claiming 4 GiB, listed in the manifest with that
    size and a hash, as an attacker would write it."""
    claimed = 4 << 30
    entries = _entries(archive)
    manifest = json.loads(next(d for m, d in entries if m.name.endswith("manifest.json")))
    manifest["artifacts"][0] |= {"bytes": claimed, "sha256": "0" * 64}
    info = tarfile.TarInfo(f"small-f16/GNUSparseFile.0/{manifest['artifacts'][0]['path']}")
    info.pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.realsize": str(claimed),
                        "GNU.sparse.name": f"small-f16/{manifest['artifacts'][0]['path']}"}
    path = tmp_path / "sparse.tar"
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(_sized(tarfile.TarInfo("small-f16/manifest.json"), data := json.dumps(manifest).encode()),
                    io.BytesIO(data))
        tar.addfile(_sized(info, payload := b"1\n0\n4\n".ljust(512, b"\0") + b"GGUF"), io.BytesIO(payload))
    assert path.stat().st_size < 20_000
    _one_line_error(cli("import", str(path)), "holds a sparse file")
    assert _nothing_installed()


def _sized(info: tarfile.TarInfo, data: bytes) -> tarfile.TarInfo:
    info.size = len(data)
    return info


def test_an_archive_whose_gguf_would_abort_llama_cpp_installs_nothing(cli, stored, tmp_path, monkeypatch):
    """A package whose manifest lists the hostile GGUF with its true size and hash, as its author would."""
    from localai.package import file_sha256

    gguf_path = stored / "small-f16.gguf"
    zoo.rewrite_gguf(gguf_path, tmp_path / "hostile.gguf", {"nemotron_h.block_count": 10**6})
    shutil.move(tmp_path / "hostile.gguf", gguf_path)
    manifest = json.loads((stored / "manifest.json").read_text())
    manifest["artifacts"][0] |= {"bytes": gguf_path.stat().st_size, "sha256": file_sha256(gguf_path)}
    (stored / "manifest.json").write_text(json.dumps(manifest))
    assert cli("export", "small-f16", "-o", str(tmp_path / "hostile.tar")).code == 0
    monkeypatch.setenv("LOCALAI_HOME", str(tmp_path / "fresh"))
    _one_line_error(cli("import", str(tmp_path / "hostile.tar")), "nemotron_h.block_count is 1000000")
    assert _nothing_installed()


def test_an_extra_file_is_refused(cli, archive):
    info = tarfile.TarInfo("small-f16/payload.py")
    info.size = 5
    _rewrite(archive, info, b"boom!")
    _one_line_error(cli("import", str(archive)), "holds 'payload.py', which its manifest does not list")
    assert _nothing_installed()


def test_import_of_something_that_is_not_an_archive(cli, tmp_path):
    bad = tmp_path / "notes.tar"
    bad.write_text("hello")
    _one_line_error(cli("import", str(bad)), "is not a readable uncompressed package archive")
    _one_line_error(cli("import", str(tmp_path / "missing.tar")), "no archive")



def test_concurrent_convert_and_rm_leave_the_store_consistent(small_checkpoint, isolated_store):
    """Conversions replacing `race` in other processes while this one keeps removing it: every command ends
    cleanly and the store never holds a partial package."""
    import subprocess
    import sys

    from localai import store
    from localai.errors import PackageError

    converts = [subprocess.Popen([sys.executable, "-m", "localai.cli", "convert", str(small_checkpoint), "--name",
                                  "race", "--force"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for _ in range(4)]
    removed = 0
    while any(c.poll() is None for c in converts):
        try:
            store.remove("race")
            removed += 1
        except PackageError:  # not there (yet, or any more)
            pass
    for process in converts:
        _, err = process.communicate()
        assert process.returncode == 0, err  # --force replaces whatever is there, or nothing
    assert removed >= 1, "the race never happened"
    models = isolated_store / "models"
    assert {p.name for p in models.iterdir()} <= {"race", ".lock"}  # no staging or doomed folders left
    if (models / "race").exists():
        assert subprocess.run([sys.executable, "-m", "localai.cli", "verify", "race"], capture_output=True,
                              check=False).returncode == 0


def _archive_of(path, entries):
    """A tar at `path` from (TarInfo, bytes | None) entries."""
    with tarfile.open(path, "w") as tar:
        for info, data in entries:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _entries(archive):
    with tarfile.open(archive) as tar:
        return [(m, tar.extractfile(m).read() if m.isfile() else None) for m in tar.getmembers()]


def test_more_malformed_archives_are_refused_with_one_line(cli, archive, tmp_path):
    good = _entries(archive)
    manifest = json.loads(next(d for m, d in good if m.name.endswith("manifest.json")))
    dot = tarfile.TarInfo(".")
    dot.type = tarfile.DIRTYPE
    folder_manifest = tarfile.TarInfo("small-f16/manifest.json")
    folder_manifest.type = tarfile.DIRTYPE
    bad_types = json.dumps({**manifest, "artifacts": [{**manifest["artifacts"][0], "path": 5}]}).encode()
    listed_twice = json.dumps({**manifest, "artifacts": manifest["artifacts"] * 2}).encode()
    cases = {
        "dot.tar": ([(dot, None), *good], "path outside its folder"),
        "folder-manifest.tar": ([(folder_manifest, None), *[e for e in good if "manifest" not in e[0].name]],
                                "has no small-f16/manifest.json"),
        "twice.tar": ([*good, good[-1]], "twice"),
        "bad-types.tar": ([(tarfile.TarInfo("small-f16/manifest.json"), bad_types),
                           *[e for e in good if "manifest" not in e[0].name]], "bad artifact entry"),
        "listed-twice.tar": ([(tarfile.TarInfo("small-f16/manifest.json"), listed_twice),
                              *[e for e in good if "manifest" not in e[0].name]], "listed twice"),
    }
    for name, (entries, message) in cases.items():
        _one_line_error(cli("import", str(_archive_of(tmp_path / name, entries))), message)
    flood = [(tarfile.TarInfo(f"small-f16/d{i}"), None) for i in range(10_001)]
    for info, _ in flood:
        info.type = tarfile.DIRTYPE
    _one_line_error(cli("import", str(_archive_of(tmp_path / "flood.tar", [*good, *flood]))), "more than 10000")
    empty_folder = tarfile.TarInfo("small-f16/empty")
    empty_folder.type = tarfile.DIRTYPE
    _one_line_error(cli("import", str(_archive_of(tmp_path / "folder.tar", [*good, (empty_folder, None)]))),
                    "a folder the manifest does not list")
    compressed = tmp_path / "small.tar.gz"
    with tarfile.open(compressed, "w:gz") as tar:
        for info, data in good:
            tar.addfile(info, io.BytesIO(data))
    _one_line_error(cli("import", str(compressed)), "not a readable uncompressed package archive")
    assert _nothing_installed()


@pytest.mark.parametrize("name", ["../../../outside/escaped", "/tmp/escaped", "Upper", "a\x1b]0;owned\x07"])
def test_a_package_whose_manifest_names_a_path_is_refused(cli, stored, tmp_path, name):
    manifest = json.loads((stored / "manifest.json").read_text())
    (stored / "manifest.json").write_text(json.dumps(manifest | {"name": name}))
    out = tmp_path / "out"
    out.mkdir()
    for args in (("export", str(stored), "-o", str(out)), ("verify", str(stored)), ("info", str(stored))):
        _one_line_error(cli(*args), "invalid package name")
    assert list(out.iterdir()) == [] and not (tmp_path / "escaped.tar").exists()
    assert not any(p.suffix == ".tar" for p in tmp_path.parent.parent.iterdir())


def test_a_manifest_that_links_out_of_its_package_is_refused(cli, stored, tmp_path):
    outside = tmp_path / "elsewhere.json"
    outside.write_text((stored / "manifest.json").read_text())
    (stored / "manifest.json").unlink()
    (stored / "manifest.json").symlink_to(outside)
    for args in (("verify", str(stored)), ("export", str(stored), "-o", str(tmp_path / "x.tar"))):
        _one_line_error(cli(*args), "manifest.json is a link")
    assert not (tmp_path / "x.tar").exists()


@pytest.mark.parametrize(("change", "message"), [
    ({"graph": "inputs"}, "graph must be a JSON object"),
    ({"tokenizer": ["eos_token_ids", 2]}, "tokenizer must be a JSON object"),
    ({"tokenizer": {"eos_token_ids": "2"}}, "tokenizer token ids must be whole numbers"),
    ({"tokenizer": {"eos_token_id": -1}}, "tokenizer token ids must be whole numbers"),
    ({"tokenizer": {"bos_token": 5}}, "tokenizer token texts must be strings"),
    ({"context_length": 2**40}, "context_length must be a whole number"),
    ({"context_length": True}, "context_length must be a whole number"),
    ({"architecture": ["llama"]}, "architecture must be a JSON string"),
    ({"chat_template": 5}, "chat_template must be a JSON string"),
])
def test_manifest_fields_of_the_wrong_type_are_one_line(cli, stored, change, message):
    manifest = json.loads((stored / "manifest.json").read_text())
    (stored / "manifest.json").write_text(json.dumps(manifest | change))
    _one_line_error(cli("info", str(stored)), message)


def test_rm_of_a_linked_package_removes_the_link_only(cli, stored, tmp_path):
    elsewhere = shutil.move(str(stored), tmp_path / "kept")
    (models_dir() / "linked").symlink_to(elsewhere, target_is_directory=True)
    assert cli("rm", "linked").code == 0
    assert (tmp_path / "kept" / "manifest.json").is_file()
    assert [p.name for p in models_dir().iterdir()] == [".lock"]


def test_ls_shows_the_folder_name_commands_use(cli, small_checkpoint):
    assert cli("convert", str(small_checkpoint), "-o", str(models_dir() / "my-copy")).code == 0
    assert [row["name"] for row in json.loads(cli("ls", "--json").out)] == ["my-copy"]
    assert cli("info", "my-copy").code == 0


def test_ls_and_info_escape_control_characters_from_a_manifest(cli, stored):
    manifest = json.loads((stored / "manifest.json").read_text())
    hostile = "nemotron_h\x1b]0;owned\x07\x1b[2J"
    (stored / "manifest.json").write_text(json.dumps(manifest | {"architecture": hostile, "created": "\x1b[31mred"}))
    for args in (("ls",), ("info", "small-f16")):
        result = cli(*args)
        assert result.code == 0, result.err
        assert "\x1b" not in result.out and "\x07" not in result.out
        assert "nemotron_h\\x1b]0;owned\\x07\\x1b[2J" in result.out
