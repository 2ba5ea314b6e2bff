"""`localai bench --endpoint`: the same tests against a running `localai serve`, in the same table as a local
package."""

from __future__ import annotations

import json

from tests.server import free_port


def test_served_and_local_rows_come_in_one_table(cli, package, serve):
    folder = package("nemotron_h", "q8_0")
    name = json.loads((folder / "manifest.json").read_text())["name"]
    server = serve(str(folder))
    result = cli("bench", str(folder), "--endpoint", f"{server.url}/v1", "--model", name, "-p", "32", "-n", "8",
                 "-r", "2", "--turns", "3", "--format", "json")
    assert result.code == 0, result.err
    rows = json.loads(result.out)["results"]
    local = {r["test"]: r for r in rows if r["format"] == "gguf"}
    served = {r["test"]: r for r in rows if r["format"] == "http"}
    assert set(local) == set(served) == {"pp32", "tg8", "chat3"}
    assert all(r["model"] == name and r["tokens_per_s"] > 0 and len(r["samples_tokens_per_s"]) == 2
               for r in served.values())
    assert served["pp32"]["ttft_ms"] > 0 and served["tg8"]["itl_p50_ms"] > 0
    assert len(served["chat3"]["ttft_per_turn_ms"]) == 3
    assert served["pp32"]["backend"] == f"endpoint 127.0.0.1:{server.port}"


def test_an_endpoint_that_is_not_there_is_one_line(cli):
    result = cli("bench", "--endpoint", f"http://127.0.0.1:{free_port()}/v1", "--model", "x", "-n", "4", "-p", "0",
                 "-r", "1")
    assert result.code == 1 and result.err.startswith("error: cannot reach http://127.0.0.1:")
    assert result.err.count("\n") == 1


def test_endpoint_and_model_go_together(cli):
    result = cli("bench", "--endpoint", "http://127.0.0.1:1/v1")
    assert result.code == 1 and "--endpoint and --model go together" in result.err
