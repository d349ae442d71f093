"""medimg._parallel: map_items keeps order and records failures on every backend, the
dask backend included (a local dask.distributed cluster of two worker processes), and a
cache build on a cluster still lists its failures in the manifest."""

from __future__ import annotations

import math
import os

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
