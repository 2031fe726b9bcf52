"""The multi-process directory `ticketgate serve --workers N` prepares for the workers."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from ticketgate.observability.prometheus import MULTIPROC_ENV, prepare_multiprocess_dir


def test_without_one_set_a_fresh_empty_directory_is_made_and_announced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    env: dict[str, str] = {}
    made = prepare_multiprocess_dir(env)
    assert made is not None
    assert env[MULTIPROC_ENV] == str(made)
    assert made.is_dir()
    assert made.parent == tmp_path
    assert list(made.iterdir()) == []
    again = prepare_multiprocess_dir({})
    assert again != made  # one per run: never a previous run's counts


def test_an_operators_directory_is_used_as_given_and_never_emptied(tmp_path: Path) -> None:
    theirs = tmp_path / "metrics"
    env = {MULTIPROC_ENV: str(theirs)}
    assert prepare_multiprocess_dir(env) is None  # not ours to remove
    assert theirs.is_dir()
    (theirs / "counter_1.db").write_bytes(b"x")
    assert prepare_multiprocess_dir(env) is None
    assert (theirs / "counter_1.db").exists()
    assert env == {MULTIPROC_ENV: str(theirs)}
