"""The namespace helper's own checks: it names why a machine cannot run the multi-host tests."""

from __future__ import annotations

import subprocess

import pytest

from tests import netns


def test_the_probe_names_missing_root(monkeypatch):
    monkeypatch.setattr(netns.os, "geteuid", lambda: 1000)
    assert "needs root" in netns.namespaces_unavailable.__wrapped__()


def test_the_probe_names_a_missing_ip_command(monkeypatch):
    monkeypatch.setattr(netns.os, "geteuid", lambda: 0)

    def no_ip(*args, **kwargs):
        raise FileNotFoundError("ip")

    monkeypatch.setattr(netns.subprocess, "run", no_ip)
    assert "iproute2" in netns.namespaces_unavailable.__wrapped__()


def test_the_probe_names_a_refused_namespace(monkeypatch):
    monkeypatch.setattr(netns.os, "geteuid", lambda: 0)

    def refused(argv, **kwargs):
        return subprocess.CompletedProcess(
            argv, 1, "", "mount --make-shared /run/netns failed: Operation not permitted"
        )

    monkeypatch.setattr(netns.subprocess, "run", refused)
    assert "not permitted" in netns.namespaces_unavailable.__wrapped__()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgres://postgres@127.0.0.1:5432/test_x", "postgres://postgres@10.231.7.1:4000/test_x"),
        ("redis://127.0.0.1:6379/13", "redis://10.231.7.1:4000/13"),
        ("redis://:secret@localhost/2", "redis://:secret@10.231.7.1:4000/2"),
    ],
)
def test_a_store_url_is_relocated_to_the_forwarder(url, expected):
    assert netns.relocated_url(url, "10.231.7.1", 4000) == expected
