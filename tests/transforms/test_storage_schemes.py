"""The Beam layer's URI check: a scheme is readable when Beam's file system for it is here."""

from __future__ import annotations

import pytest

from transforms import storage


@pytest.mark.parametrize("uri", ["/tmp/a.mp4", "relative/a.mp4", "file:///tmp/a.mp4"])
def test_local_paths_are_readable(uri):
    assert storage.scheme_problem(uri) is None


@pytest.mark.parametrize("uri", ["http://x/a.mp4", "https://x/a.mp4", "ftp://x/a.mp4"])
def test_web_schemes_are_refused_in_one_line(uri):
    message = storage.scheme_problem(uri)
    assert message and uri in message and "\n" not in message and "local path" in message


def test_a_scheme_without_its_beam_file_system_is_refused(monkeypatch):
    def missing(uri):
        raise ValueError("Unable to get filesystem from specified path ... pip install apache-beam[gcp]")

    monkeypatch.setattr(storage.FileSystems, "get_filesystem", missing)
    message = storage.scheme_problem("gs://bucket/a.mp4")
    assert "not installed" in message and "apache-beam[gcp]" in message and "Traceback" not in message
    monkeypatch.undo()
    monkeypatch.setattr(storage.FileSystems, "get_filesystem", lambda uri: object())
    assert storage.scheme_problem("gs://bucket/a.mp4") is None
