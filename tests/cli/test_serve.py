"""`localai serve` on the command line: what it refuses before it listens (the server itself is tested as a
process in tests/localai/server)."""

from __future__ import annotations

import argparse

import pytest

from localai.cli.serve import check_host, duration


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "::", "my-workstation"])
def test_a_host_others_can_reach_needs_a_key(cli, package, host):
    result = cli("serve", str(package("nemotron_h", "q8_0")), "--host", host)
    assert result.code == 1 and result.out == ""
    assert result.err == f"error: --host {host} lets other machines connect: give --api-key (or --insecure to " \
                         "serve without one)\n"


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "127.0.0.2"])
def test_loopback_needs_no_key(host):
    check_host(host, None, insecure=False)


def test_a_key_or_insecure_allows_other_hosts():
    check_host("0.0.0.0", "key", insecure=False)
    check_host("0.0.0.0", None, insecure=True)


def test_an_empty_store_is_one_line(cli):
    result = cli("serve")
    assert result.code == 1
    assert result.err == "error: the store has no packages to serve: convert or pull one, or name a package\n"


def test_an_unknown_model_is_one_line(cli):
    result = cli("serve", "no-such-model")
    assert result.code == 1 and result.err.startswith("error: no model 'no-such-model'")


@pytest.mark.parametrize(("text", "seconds"), [("300", 300), ("30s", 30), ("5m", 300), ("1h", 3600),
                                               ("250ms", 0.25), ("-1", float("inf")), ("forever", float("inf"))])
def test_keep_alive_durations(text, seconds):
    assert duration(text) == seconds


@pytest.mark.parametrize("text", ["5 minutes", "m", "-5s", ""])
def test_bad_durations_are_refused(text):
    with pytest.raises(argparse.ArgumentTypeError):
        duration(text)
