"""open_store picks the backend from CONTENT_STORE_URL."""

from __future__ import annotations

from pathlib import Path

import pytest

from twisted.internet.task import Clock

from imagecatcher.config import Config
from imagecatcher.storage import StoreError
from imagecatcher.storage.factory import open_store
from imagecatcher.storage.fs import FileStore
from imagecatcher.storage.s3 import S3Store
from imagecatcher.storage.sproxyd import SproxydStore
from tests.storefakes import FakeSproxyd, SyncThreadPool, stub_client


def _open(**settings: object) -> object:
    config = Config(**settings)  # type: ignore[arg-type]
    return open_store(config, Clock(), stub_client(FakeSproxyd()), SyncThreadPool())


def test_file_store(tmp_path: Path) -> None:
    """file:///dir gives a FileStore."""
    assert isinstance(_open(content_store_url=f"file://{tmp_path}"), FileStore)


def test_sproxyd_store() -> None:
    """sproxyd:// gives a SproxydStore with the rings mapping applied."""
    store = _open(
        content_store_url="sproxyd://replicated:81/proxy/bparc",
        scality_rings_mapping={"replicated": "sc1-jrc"},
    )
    assert isinstance(store, SproxydStore)
    assert store.base_url == "http://sc1-jrc:81/proxy/bparc"


def test_s3_store() -> None:
    """s3://bucket gives an S3Store on the configured endpoint."""
    store = _open(
        content_store_url="s3://tiles",
        s3_endpoint_url="http://127.0.0.1:8333",
        s3_access_key_id="AK",
        s3_secret_access_key="SK",
    )
    assert isinstance(store, S3Store)
    assert store.url("C/a b") == "http://127.0.0.1:8333/tiles/C/a%20b"


def test_s3_defaults_to_the_aws_endpoint_of_the_region() -> None:
    """Without S3_ENDPOINT_URL the regional AWS endpoint is used."""
    store = _open(
        content_store_url="s3://tiles",
        s3_region="eu-west-1",
        s3_access_key_id="AK",
        s3_secret_access_key="SK",
    )
    assert isinstance(store, S3Store)
    assert store.url("k") == "https://s3.eu-west-1.amazonaws.com/tiles/k"


@pytest.mark.parametrize(
    "url",
    [
        "ftp://host/dir",
        "memory:",
        "s3://tiles/prefix",
        "s3://",
        "sproxyd://host:81/bparc",
        "file:",
    ],
)
def test_bad_urls_name_the_key(url: str) -> None:
    """Anything else raises StoreError naming CONTENT_STORE_URL."""
    with pytest.raises(StoreError, match="CONTENT_STORE_URL"):
        _open(content_store_url=url, s3_access_key_id="AK", s3_secret_access_key="SK")


def test_s3_without_credentials() -> None:
    """An S3 store without credentials is refused at start-up."""
    with pytest.raises(StoreError, match=r"CONTENT_STORE_URL.*access key"):
        _open(content_store_url="s3://tiles", s3_endpoint_url="http://h:1")
