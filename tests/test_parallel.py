"""medimg._parallel: map_items keeps order and records failures on every backend, the
dask backend included (a local dask.distributed cluster of two worker processes), and a
cache build on a cluster still lists its failures in the manifest."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

from medimg._parallel import DASK_SCHEDULER_ENV, map_items, resolve_backend
from medimg.errors import ConfigError


def _square_root_file(item):
    """A cache 'work' function: writes sqrt(value) to the target (fails on negatives)."""
    from medimg._fsutil import atomic_write_text

    value = math.sqrt(item["value"])
    atomic_write_text(item["target"], f"{value}\n")
    return {"pid": os.getpid()}


@pytest.mark.parametrize("backend", ["loky", "threading"])
def test_map_items_keeps_order_and_records_failures(backend):
    results = map_items(math.sqrt, [4, 9, -1, 16], n_jobs=2, progress=False, backend=backend)
    assert [r.value for r in results] == [2.0, 3.0, None, 4.0]
    assert [r.ok for r in results] == [True, True, False, True]
    assert results[2].error.startswith("ValueError: math domain error")


def test_backend_resolution(monkeypatch):
    monkeypatch.delenv(DASK_SCHEDULER_ENV, raising=False)
    assert resolve_backend(None) == ("loky", None)
    assert resolve_backend("threading") == ("threading", None)
    assert resolve_backend("tcp://10.0.0.1:8786") == ("dask", "tcp://10.0.0.1:8786")
    with pytest.raises(ConfigError, match=DASK_SCHEDULER_ENV):
        resolve_backend("dask")
    with pytest.raises(ConfigError, match="not one of"):
        resolve_backend("spark")
    monkeypatch.setenv(DASK_SCHEDULER_ENV, "tcp://127.0.0.1:9")
    assert resolve_backend(None) == ("dask", "tcp://127.0.0.1:9")
    assert resolve_backend("dask") == ("dask", "tcp://127.0.0.1:9")
    assert resolve_backend("loky") == ("loky", None)  # an explicit choice wins


@pytest.fixture(scope="module")
def cluster():
    import distributed
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as local:
        yield local


@pytest.mark.slow
def test_dask_backend_on_a_local_cluster(cluster, tmp_path, monkeypatch):
    from medimg.datasets.cache import build

    results = map_items(math.sqrt, [4, 9, -1, 16], progress=False,
                        backend=cluster.scheduler_address)
    assert [r.value for r in results] == [2.0, 3.0, None, 4.0]
    assert "ValueError" in results[2].error
    # the default backend follows MEDIMG_DASK_SCHEDULER: a cache build (what `medimg
    # prepare` runs) goes to the cluster unchanged, and its failure lands in the manifest
    monkeypatch.setenv(DASK_SCHEDULER_ENV, cluster.scheduler_address)
    folder = tmp_path / "cache"
    items = [{"item": f"v{v}", "target": str(folder / f"v{v}.txt"), "sources": [],
              "value": v} for v in (1, 4, -4, 9, 16, 25)]
    manifest = build(items, _square_root_file, folder, progress=False,
                     extra_columns=("pid",))
    assert manifest["status"].tolist() == ["ok", "ok", "error", "ok", "ok", "ok"]
    assert "math domain error" in manifest.loc[2, "error"]
    assert (folder / "v16.txt").read_text() == "4.0\n"
    workers = set(manifest["pid"].dropna().astype(int))
    assert os.getpid() not in workers and len(workers) >= 1  # ran in the cluster's workers
    assert build(items, _square_root_file, folder, progress=False)["status"].tolist() == \
        ["cached", "cached", "error", "cached", "cached", "cached"]


def test_unreachable_scheduler_is_a_clear_error(monkeypatch):
    import medimg._parallel

    monkeypatch.setattr(medimg._parallel, "DASK_CONNECT_TIMEOUT_S", 2.0)
    with pytest.raises(ConfigError, match="cannot reach the dask scheduler"):
        map_items(math.sqrt, [1, 4], progress=False, backend="tcp://127.0.0.1:9")


@pytest.mark.parametrize("helpers", [0, 1, 3])
def test_shared_copies_equal_a_plain_copy(helpers):
    """A large copy shared among the caller and helper threads writes what one
    ``np.copyto`` writes: first axes that do not divide among the threads, one shorter
    than the threads, strided sources, several pairs at once, small copies (not shared)."""
    from medimg import _parallel

    copies = _parallel.CopyHelpers(helpers)
    rng = np.random.default_rng(helpers)
    volume = rng.standard_normal((37, 41, 90, 4)).astype(np.float32)
    codes = rng.integers(0, 4, volume.shape[:3]).astype(np.uint8)
    for box in ((slice(3, 34), slice(5, 37), slice(7, 88)),  # 31 x-planes: 9.9 MB
                (slice(0, 2), slice(0, 41), slice(0, 90)),  # 2 x-planes < helpers + 1
                (slice(10, 11), slice(2, 40), slice(1, 60)),  # one plane
                (slice(4, 9), slice(4, 9), slice(4, 9))):  # 2 KB: copied by the caller
        shape = tuple(s.stop - s.start for s in box)
        image = np.full((*shape, 4), np.nan, np.float32)
        label = np.full(shape, 255, np.uint8)
        copies.copy((image, volume[box]), (label, codes[box]))
        np.testing.assert_array_equal(image, volume[box])
        np.testing.assert_array_equal(label, codes[box])
    if helpers:  # every helper given back: all can be taken again
        assert all(copies._idle.acquire(False) for _ in range(helpers))
        assert not copies._idle.acquire(False)


def _copy_in_child(queue):
    from medimg._parallel import shared_copy

    source = np.arange(64 * 64 * 96 * 4, dtype=np.float32).reshape(64, 64, 96, 4)
    out = np.empty((48, 48, 96, 4), np.float32)
    shared_copy((out, source[8:56, 8:56]))
    queue.put(bool(np.array_equal(out, source[8:56, 8:56])))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_shared_copies_work_in_a_forked_child():
    """A child forked after the parent's helper threads started (a multiprocessing or
    Dask worker) starts its own instead of waiting on threads it does not have."""
    import multiprocessing

    from medimg import _parallel

    if not _parallel.COPY.helpers:
        pytest.skip("one CPU: no helper threads to inherit")
    source = np.zeros((64, 64, 96, 4), np.float32)
    _parallel.shared_copy((np.empty_like(source), source))  # the parent's pool started
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_copy_in_child, args=(queue,))
    child.start()
    child.join(60)
    alive = child.is_alive()
    if alive:
        child.kill()
    assert not alive, "the forked child hung in a shared copy"
    assert queue.get(timeout=5) is True
