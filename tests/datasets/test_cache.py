"""medimg.datasets.cache: keyed, atomic, resumable, locked caches."""

from __future__ import annotations

import os
import time
from functools import partial

import numpy as np
import pytest

from medimg.datasets import cache
from medimg.errors import DecodeError, LayoutError


def _work(item, fail=()):
    """Writes the item's source text, doubled, atomically (a picklable worker)."""
    from medimg._fsutil import atomic_write_text

    if item["item"] in fail:
        raise ValueError(f"cannot do {item['item']}")
    text = open(item["sources"][0]).read()
    atomic_write_text(item["target"], text * 2)
    return {"length": len(text)}


def _items(folder, sources, settings=None):
    return [{"item": p.stem, "target": str(folder / f"{p.stem}.txt"), "sources": [str(p)],
             **({"settings": settings} if settings is not None else {})} for p in sources]


@pytest.fixture
def sources(tmp_path):
    paths = []
    for name in ("a", "b", "c"):
        path = tmp_path / "src" / f"{name}.in"
        path.parent.mkdir(exist_ok=True)
        path.write_text(name * 3)
        paths.append(path)
    return paths


def test_settings_key_is_order_and_type_insensitive():
    assert cache.settings_key({"a": 1, "b": (1, 2)}) == cache.settings_key({"b": [1, 2], "a": 1})
    assert cache.settings_key({"a": 1}) != cache.settings_key({"a": 2})
    assert cache.settings_key({"x": np.float64(1.5)}) == cache.settings_key({"x": 1.5})


def test_cache_folder_is_keyed_on_settings(tmp_path):
    one = cache.cache_folder(tmp_path, "data", {"spacing": 1.0})
    two = cache.cache_folder(tmp_path, "data", {"spacing": 2.0})
    again = cache.cache_folder(tmp_path, "data", {"spacing": 1.0})
    assert one != two and one == again
    assert (one / "settings.json").is_file()


def test_build_resumes_and_redoes_changed_sources(tmp_path, sources):
    folder = tmp_path / "cache"
    first = cache.build(_items(folder, sources), _work, folder, n_jobs=1, progress=False,
                        extra_columns=("length",))
    assert first["status"].tolist() == ["ok"] * 3
    assert (folder / "a.txt").read_text() == "aaa" * 2
    second = cache.build(_items(folder, sources), _work, folder, n_jobs=1, progress=False,
                         extra_columns=("length",))
    assert second["status"].tolist() == ["cached"] * 3
    assert second["length"].tolist() == [3, 3, 3]  # kept from the run that did the work
    time.sleep(0.01)
    sources[1].write_text("BBBB")
    third = cache.build(_items(folder, sources), _work, folder, n_jobs=1, progress=False)
    assert third["status"].tolist() == ["cached", "ok", "cached"]
    assert (folder / "b.txt").read_text() == "BBBB" * 2


def test_per_item_settings_key_the_item(tmp_path, sources):
    folder = tmp_path / "cache"
    cache.build(_items(folder, sources, {"n4": False}), _work, folder, n_jobs=1, progress=False)
    same = cache.build(_items(folder, sources, {"n4": False}), _work, folder, n_jobs=1,
                       progress=False)
    changed = cache.build(_items(folder, sources, {"n4": True}), _work, folder, n_jobs=1,
                          progress=False)
    assert same["status"].tolist() == ["cached"] * 3
    assert changed["status"].tolist() == ["ok"] * 3


def test_failures_are_recorded_and_the_batch_goes_on(tmp_path, sources):
    folder = tmp_path / "cache"
    table = cache.build(_items(folder, sources), partial(_work, fail=("b",)), folder, n_jobs=1,
                        progress=False)
    assert table["status"].tolist() == ["ok", "error", "ok"]
    assert "cannot do b" in table.loc[1, "error"]
    assert cache.cached_items(folder)["item"].tolist() == ["a", "c"]
    again = cache.build(_items(folder, sources), _work, folder, n_jobs=1, progress=False)
    assert again["status"].tolist() == ["cached", "ok", "cached"]  # the failure is retried


def test_manifest_is_written_as_each_item_ends(tmp_path, sources):
    folder = tmp_path / "cache"
    seen = []

    def spy(item):
        seen.append(cache.read_manifest(folder)["status"].tolist())
        return _work(item)

    cache.build(_items(folder, sources), spy, folder, n_jobs=1, progress=False)
    # before the 2nd item runs, the 1st is already recorded as ok
    assert seen[1][0] == "ok" and seen[2][:2] == ["ok", "ok"]


def test_temporary_files_are_removed_and_never_listed(tmp_path, sources):
    folder = tmp_path / "cache"
    cache.build(_items(folder, sources[:1]), _work, folder, n_jobs=1, progress=False)
    stale = folder / ".b.abc123.tmp.txt"
    stale.write_text("half written")
    assert "b" not in cache.cached_items(folder)["item"].tolist()
    cache.build(_items(folder, sources), _work, folder, n_jobs=1, progress=False)
    assert not stale.exists()


def test_a_file_removed_behind_the_cache_is_redone(tmp_path, sources):
    folder = tmp_path / "cache"
    cache.build(_items(folder, sources), _work, folder, n_jobs=1, progress=False)
    os.remove(folder / "c.txt")
    assert cache.cached_items(folder)["item"].tolist() == ["a", "b"]
    table = cache.build(_items(folder, sources), _work, folder, n_jobs=1, progress=False)
    assert table["status"].tolist() == ["cached", "cached", "ok"]


def test_damaged_manifest_redoes_everything(tmp_path, sources):
    folder = tmp_path / "cache"
    cache.build(_items(folder, sources), _work, folder, n_jobs=1, progress=False)
    (folder / cache.MANIFEST).write_text("garbage,,\n\x00\x01")
    table = cache.build(_items(folder, sources), _work, folder, n_jobs=1, progress=False)
    assert table["status"].tolist() == ["ok"] * 3


def test_lock_excludes_a_second_builder(tmp_path):
    folder = tmp_path / "cache"
    with cache.lock(folder):
        with pytest.raises(LayoutError, match="another process"):
            # flock locks are per open file description: a second open conflicts
            with cache.lock(folder, wait=False):
                pass


def test_duplicate_item_names(tmp_path, sources):
    folder = tmp_path / "cache"
    items = _items(folder, sources[:1]) * 2
    with pytest.raises(LayoutError, match="two items"):
        cache.build(items, _work, folder, n_jobs=1, progress=False)


def test_parallel_build_matches_serial(tmp_path, sources):
    folder = tmp_path / "cache"
    table = cache.build(_items(folder, sources), _work, folder, n_jobs=2, progress=False)
    assert table["status"].tolist() == ["ok"] * 3
    assert sorted(p.name for p in folder.glob("*.txt")) == ["a.txt", "b.txt", "c.txt"]


def test_h5_round_trip_and_errors(tmp_path):
    arrays = {"image": np.arange(2 * 3 * 4 * 2, dtype=np.float32).reshape(2, 3, 4, 2),
              "locations/1": np.array([[0, 1, 2]], np.int32)}
    attrs = {"case": "x", "box": np.array([[0, 2], [1, 3]]), "plan": {"a": [1, 2]},
             "nothing": None}
    path = cache.write_h5(tmp_path / "x.h5", arrays, attrs)
    read, meta = cache.read_h5(path)
    np.testing.assert_array_equal(read["image"], arrays["image"])
    np.testing.assert_array_equal(read["locations/1"], arrays["locations/1"])
    assert meta["case"] == "x" and meta["plan"] == {"a": [1, 2]} and meta["nothing"] is None
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    with pytest.raises(DecodeError):
        cache.read_h5(tmp_path / "missing.h5")
    with pytest.raises(DecodeError):
        cache.read_h5(path, names=["label"])


_SCRIPT = """
import os, sys, time
from functools import partial
from pathlib import Path
from medimg.datasets import cache

def work(item):
    from medimg._fsutil import atomic_path
    Path(item["pids"]).joinpath(str(os.getpid())).touch()
    with atomic_path(item["target"]) as tmp:
        tmp.write_text("partial")
        time.sleep(float(item["seconds"]))
        tmp.write_text("complete " + item["item"])
    return {}

if __name__ == "__main__":
    folder, pids, seconds = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    items = [{"item": f"s{i}", "target": str(folder / f"s{i}.txt"), "sources": [],
              "pids": pids, "seconds": seconds} for i in range(8)]
    print(cache.build(items, work, folder, n_jobs=2, progress=False)["status"].tolist())
"""


@pytest.mark.slow
def test_kill_9_mid_run_then_rerun(tmp_path):
    """kill -9 of a running build: no worker left behind, nothing half-written listed, and
    the rerun redoes no finished item."""
    import signal
    import subprocess
    import sys

    script = tmp_path / "build.py"
    script.write_text(_SCRIPT)
    folder, pids = tmp_path / "cache", tmp_path / "pids"
    folder.mkdir()
    pids.mkdir()
    proc = subprocess.Popen([sys.executable, str(script), str(folder), str(pids), "1.5"])
    deadline = time.time() + 120
    while time.time() < deadline:
        if (cache.read_manifest(folder)["status"] == "ok").sum() >= 2:
            break
        time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("the build never finished two items")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    workers = [int(p.name) for p in pids.iterdir()]
    time.sleep(3)
    alive = []
    for pid in workers:
        try:
            os.kill(pid, 0)
            alive.append(pid)
        except ProcessLookupError:
            pass
    assert not alive, f"workers {alive} outlived the killed build"
    listed = cache.cached_items(folder)
    assert len(listed) >= 2
    for path in listed["path"]:
        assert open(path).read().startswith("complete")  # nothing half-written is listed
    finished = {p: os.stat(p).st_mtime_ns for p in listed["path"]}
    done = subprocess.run([sys.executable, str(script), str(folder), str(pids), "0"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    table = cache.read_manifest(folder).set_index("item")
    for path, mtime in finished.items():
        name = os.path.basename(path).removesuffix(".txt")
        assert table.loc[name, "status"] == "cached"
        assert os.stat(path).st_mtime_ns == mtime  # not redone
    assert (table["status"].isin(["ok", "cached"])).all() and len(table) == 8
    assert not [p for p in folder.iterdir() if ".tmp" in p.name]
