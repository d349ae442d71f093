"""Errors, atomic writes, the parallel batch helper and the results reporter."""

from __future__ import annotations

import json
import os
from functools import partial

import numpy as np
import pytest

from medimg import report
from medimg._fsutil import atomic_path, atomic_write_text
from medimg._parallel import map_items, resolve_n_jobs
from medimg.errors import ConfigError, DecodeError, InvalidImageError, MedimgError


def test_error_names_the_path():
    err = DecodeError("truncated pixel data", "/data/x.dcm")
    assert str(err) == "/data/x.dcm: truncated pixel data"
    assert err.path == "/data/x.dcm" and err.detail == "truncated pixel data"
    assert isinstance(err, InvalidImageError) and isinstance(err, MedimgError)
    assert isinstance(ConfigError("x"), ValueError)
    assert str(MedimgError("plain")) == "plain"


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "sub" / "vol.nii.gz"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        assert tmp.name.endswith(".nii.gz") and tmp.parent == target.parent
        tmp.write_bytes(b"half")
        raise RuntimeError("interrupted")
    assert not target.exists()
    assert list(target.parent.iterdir()) == []
    atomic_write_text(target, "whole")
    assert target.read_text() == "whole"
    assert [p.name for p in target.parent.iterdir()] == ["vol.nii.gz"]


def _square_or_fail(x, bad):
    if x == bad:
        raise ValueError(f"item {x} is bad")
    return x * x


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_map_items_keeps_order_and_records_failures(n_jobs):
    results = map_items(partial(_square_or_fail, bad=3), range(8), n_jobs=n_jobs, progress=False)
    assert [r.item for r in results] == list(range(8))
    assert [r.value for r in results if r.ok] == [0, 1, 4, 16, 25, 36, 49]
    failed = [r for r in results if not r.ok]
    assert len(failed) == 1 and failed[0].item == 3
    assert failed[0].error == "ValueError: item 3 is bad"


def test_resolve_n_jobs():
    cpus = os.cpu_count() or 1
    assert resolve_n_jobs(-1) == cpus and resolve_n_jobs(None) == cpus
    assert resolve_n_jobs(1) == 1 and resolve_n_jobs(-2) == max(1, cpus - 1)


def test_record_writes_and_merges(tmp_path, monkeypatch):
    target = tmp_path / "results.json"
    monkeypatch.setenv(report.RESULTS_ENV, str(target))
    report.record("nb", auc=np.float32(0.75), n=np.int64(3))
    report.record("nb", note="ok", missing=float("nan"))
    stored = json.loads(target.read_text())
    assert stored == {"nb": {"auc": 0.75, "n": 3, "note": "ok", "missing": None}}
    with pytest.raises(TypeError, match="figure 'bad'"):
        report.record("nb", bad=[1, 2])


def test_record_without_runner_only_returns(monkeypatch, tmp_path):
    monkeypatch.delenv(report.RESULTS_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    assert report.record("nb", dice=0.9) == {"dice": 0.9}
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("umask", "expected"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_writes_end_with_the_umask_mode(tmp_path, umask, expected):
    from medimg._fsutil import current_umask

    previous = os.umask(umask)
    try:
        assert current_umask() == umask
        text = atomic_write_text(tmp_path / "a.json", "{}")
        with atomic_path(tmp_path / "b.bin") as tmp:
            tmp.write_bytes(b"x")
        with atomic_path(tmp_path / "c.bin") as tmp:  # a writer that replaces the file
            tmp.unlink()
            tmp.write_bytes(b"y")
        with open(tmp_path / "plain", "w") as handle:  # what open() gives, for comparison
            handle.write("z")
    finally:
        os.umask(previous)
    for name in (text.name, "b.bin", "c.bin", "plain"):
        assert (tmp_path / name).stat().st_mode & 0o777 == expected, name
