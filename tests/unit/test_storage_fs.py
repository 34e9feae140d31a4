"""FileStore: key rules, path escapes, atomic writes and thread-pool use (no reactor)."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from imagecatcher.storage import (
    PING_CONTENT,
    PING_PATH,
    ObjectNotFound,
    StoredObject,
    StoreError,
)
from imagecatcher.storage.fs import FileStore, store_path_from_url
from imagecatcher.storage.keys import object_key, path_key
from tests.storefakes import ImmediateReactor, SyncThreadPool, run


class CountingPool(SyncThreadPool):
    """A synchronous pool that counts the jobs it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.jobs = 0

    def callInThreadWithCallback(  # noqa: N802 - Twisted's name
        self,
        onResult: Callable[[bool, Any], object] | None,  # noqa: N803
        func: Callable[..., Any],
        *args: Any,
        **kw: Any,
    ) -> None:
        """Count the job, then run it at once."""
        self.jobs += 1
        super().callInThreadWithCallback(onResult, func, *args, **kw)


def _md5(data: bytes) -> bytes:
    return hashlib.md5(data).digest()


@pytest.fixture
def pool() -> CountingPool:
    """A counting synchronous thread pool."""
    return CountingPool()


@pytest.fixture
def store(tmp_path: Path, pool: CountingPool) -> FileStore:
    """A FileStore rooted at ``<tmp>/root``."""
    return FileStore(tmp_path / "root", ImmediateReactor(), pool)


def _all_files(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))


@pytest.mark.parametrize(
    ("collection", "path"),
    [
        ("", "../x"),
        ("", "/../x"),
        ("/etc/passwd", "/x"),
        ("..", "/x"),
        (".", "/x"),
        ("FAFB", "/a/../../b"),
        ("FAFB", "/acquisitions/1/../../../escape"),
        ("FAFB", "/a\0b"),
        ("FA\0FB", "/a"),
        ("FAFB", "/a\\..\\..\\b"),
        ("FA\\FB", "/a"),
        ("FAFB", "//etc/passwd"),
        ("", "//etc/passwd"),
        ("FAFB", "/a//b"),
        ("FAFB", "/a/./b"),
        ("FAFB", "/a/"),
        ("", "/"),
        ("", ""),
    ],
)
def test_escaping_keys_are_refused(
    store: FileStore, tmp_path: Path, collection: str, path: str
) -> None:
    """Keys that could leave the root raise StoreError and write nothing anywhere."""
    with pytest.raises(StoreError):
        run(store.put(collection, path, b"evil", _md5(b"evil")))
    assert _all_files(tmp_path) == []


@pytest.mark.parametrize(
    "key", ["../x", "/etc/passwd", "a/../../b", "a\0b", "", "a//b"]
)
def test_escaping_keys_are_refused_on_read(store: FileStore, key: str) -> None:
    """get, get_range, verify and delete refuse an unsafe stored key too."""
    obj = StoredObject(key, "")
    for operation in (
        store.get(obj),
        store.get_range(obj, 0, 1),
        store.verify(obj, 1, _md5(b"x")),
        store.delete(obj),
    ):
        with pytest.raises(StoreError) as excinfo:
            run(operation)
        assert not isinstance(excinfo.value, ObjectNotFound)


def test_symlink_out_of_the_root_is_refused(store: FileStore, tmp_path: Path) -> None:
    """A symlinked directory pointing outside the root cannot be written through."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "FAFB").symlink_to(outside)
    with pytest.raises(StoreError):
        run(store.put("FAFB", "/acquisitions/1/a.tif", b"x", _md5(b"x")))
    assert list(outside.iterdir()) == []


def test_key_layout_and_location_url(store: FileStore, tmp_path: Path) -> None:
    """The file is ``<collection>/<path>``, the key its SHA-1 and the URL the
    percent-encoded file path."""
    obj = run(store.put("FAFB", PING_PATH, PING_CONTENT, _md5(PING_CONTENT)))
    assert obj.key == object_key("FAFB/acquisitions/0/jfs ping")
    target = tmp_path / "root" / "FAFB" / "acquisitions" / "0" / "jfs ping"
    assert obj.location_url == f"file://{tmp_path}/root/FAFB/acquisitions/0/jfs%20ping"
    assert target.read_bytes() == PING_CONTENT
    empty = run(store.put("", "/acquisitions/1/a.tif", b"", _md5(b"")))
    assert empty.key == object_key("acquisitions/1/a.tif")


def test_put_leaves_no_temporary_files(store: FileStore, tmp_path: Path) -> None:
    """After puts and a replacing put only the object file is in its directory."""
    for data in (b"one", b"two, longer"):
        obj = run(store.put("C", "/acquisitions/1/t.tif", data, _md5(data)))
    directory = tmp_path / "root" / "C" / "acquisitions" / "1"
    assert [p.name for p in directory.iterdir()] == ["t.tif"]
    assert run(store.get(obj)) == b"two, longer"
    assert (directory / "t.tif").stat().st_mode & 0o777 == 0o644


def test_wrong_md5_writes_nothing(store: FileStore, tmp_path: Path) -> None:
    """A put whose MD5 does not match fails before any directory or file is made."""
    with pytest.raises(StoreError, match="MD5"):
        run(store.put("C", "/acquisitions/1/a.tif", b"data", _md5(b"other")))
    assert _all_files(tmp_path) == []


def test_md5_must_be_sixteen_bytes(store: FileStore) -> None:
    """A hex string where the raw digest belongs is refused."""
    with pytest.raises(StoreError, match="16 bytes"):
        run(store.put("C", "/a", b"data", _md5(b"data").hex().encode()))


def test_verify_detects_size_and_content_changes(
    store: FileStore, tmp_path: Path
) -> None:
    """Verify re-reads the file: a different size or same-size corruption fails."""
    obj = run(store.put("C", "/acquisitions/1/v.tif", b"abcdef", _md5(b"abcdef")))
    run(store.verify(obj, 6, _md5(b"abcdef")))
    with pytest.raises(StoreError, match="6 bytes stored, expected 7"):
        run(store.verify(obj, 7, _md5(b"abcdef")))
    (tmp_path / "root" / "C" / "acquisitions" / "1" / "v.tif").write_bytes(b"abcdeX")
    with pytest.raises(StoreError, match="MD5"):
        run(store.verify(obj, 6, _md5(b"abcdef")))


def test_get_range_clips(store: FileStore) -> None:
    """Ranges are inclusive, clipped at the end and empty past it."""
    obj = run(store.put("C", "/r", b"0123456789", _md5(b"0123456789")))
    assert run(store.get_range(obj, 2, 4)) == b"234"
    assert run(store.get_range(obj, 8, 100)) == b"89"
    assert run(store.get_range(obj, 10, 20)) == b""
    with pytest.raises(ValueError):
        run(store.get_range(obj, 5, 4))


def test_missing_objects(store: FileStore) -> None:
    """Absent files (and directories) are ObjectNotFound; deleting them is fine."""
    run(store.put("C", "/acquisitions/1/a.tif", b"x", _md5(b"x")))
    for key in (
        "C/acquisitions/1/none.tif",
        "C/acquisitions",
        "C/acquisitions/1/a.tif/x",
    ):
        obj = StoredObject(key, "")
        with pytest.raises(ObjectNotFound):
            run(store.get(obj))
        with pytest.raises(ObjectNotFound):
            run(store.verify(obj, 1, _md5(b"x")))
        run(store.delete(obj))


def test_file_where_a_directory_is_needed(store: FileStore) -> None:
    """A put below an existing object's path is a StoreError, not ObjectNotFound."""
    run(store.put("C", "/a", b"x", _md5(b"x")))
    with pytest.raises(StoreError) as excinfo:
        run(store.put("C", "/a/b", b"y", _md5(b"y")))
    assert not isinstance(excinfo.value, ObjectNotFound)


def test_all_io_goes_through_the_thread_pool(
    store: FileStore, pool: CountingPool
) -> None:
    """Each operation hands its file work to the thread pool."""
    obj = run(store.put("C", "/p", b"data", _md5(b"data")))
    run(store.verify(obj, 4, _md5(b"data")))
    run(store.get(obj))
    run(store.get_range(obj, 0, 1))
    run(store.delete(obj))
    assert pool.jobs == 5
    run(store.health("C"))
    assert pool.jobs == 7


def test_health_writes_the_ping_probe(store: FileStore, tmp_path: Path) -> None:
    """health(collection) leaves ``jfs ping`` in that collection."""
    run(store.health("FAFB"))
    probe = tmp_path / "root" / "FAFB" / "acquisitions" / "0" / "jfs ping"
    assert probe.read_bytes() == PING_CONTENT


def test_path_key() -> None:
    """path_key joins collection and path without the leading slash."""
    assert path_key("FAFB", "/acquisitions/1/a.tif") == "FAFB/acquisitions/1/a.tif"
    assert path_key("", "/acquisitions/1/a.tif") == "acquisitions/1/a.tif"
    assert path_key("FAFB", "acquisitions/1/a.tif") == "FAFB/acquisitions/1/a.tif"


def test_store_path_from_url() -> None:
    """file:///abs and file:relative name directories; other forms are refused."""
    assert store_path_from_url("file:///var/objects") == Path("/var/objects")
    assert store_path_from_url("file:var/objects") == Path("var/objects")
    for bad in ("file://host/dir", "file:", "s3://bucket"):
        with pytest.raises(StoreError):
            store_path_from_url(bad)


def test_relative_root_is_made_absolute(tmp_path: Path, pool: CountingPool) -> None:
    """A relative root resolves against the working directory at construction."""
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        store = FileStore(Path("objects"), ImmediateReactor(), pool)
    finally:
        os.chdir(cwd)
    obj = run(store.put("", "/a", b"x", _md5(b"x")))
    assert obj.location_url == f"file://{tmp_path}/objects/a"


def _staged(store: FileStore, data: bytes, n: int) -> Path:
    store.staging_dir.mkdir(parents=True, exist_ok=True)
    source = store.staging_dir / f"tile-{n}.part"
    source.write_bytes(data)
    return source


def test_place_through_a_symlink_out_of_the_root_is_refused(
    store: FileStore, tmp_path: Path
) -> None:
    """A rename into place cannot go through a symlinked directory either,
    and creates nothing outside the root."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "FAFB").symlink_to(outside)
    source = _staged(store, b"x", 1)
    with pytest.raises(StoreError):
        run(store.place(source, _md5(b"x"), "FAFB", "/acquisitions/1/a.tif"))
    assert list(outside.iterdir()) == []
    assert source.exists()


def test_place_after_the_directory_was_removed(store: FileStore) -> None:
    """A tile's directory is remembered; removed meanwhile (an operator
    clearing an acquisition), it is made again for the next tile."""
    path = "/acquisitions/123456789012/col0001_row0002_cam0.tif"
    first = run(store.place(_staged(store, b"one", 1), _md5(b"one"), "FAFB", path))
    directory = store_path_from_url(first.location_url).parent
    shutil.rmtree(directory)
    again = "/acquisitions/123456789012/col0001_row0003_cam0.tif"
    second = run(store.place(_staged(store, b"two", 2), _md5(b"two"), "FAFB", again))
    assert store_path_from_url(second.location_url).read_bytes() == b"two"
    run(store.verify(second, 3, _md5(b"two")))
