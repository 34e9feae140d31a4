"""Choose and build the content store named by ``CONTENT_STORE_URL``.

``file:<dir>`` → :class:`~.fs.FileStore`, ``sproxyd://host:port/proxy/<driver>``
→ :class:`~.sproxyd.SproxydStore` (with ``SCALITY_RINGS_MAPPING`` and
``SCALITY_HOST``), ``s3://<bucket>`` → :class:`~.s3.S3Store` (with the
``S3_*`` keys; the endpoint defaults to AWS's for ``S3_REGION``).  Anything
else raises StoreError naming ``CONTENT_STORE_URL``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from treq.client import HTTPClient
from twisted.python.threadpool import ThreadPool

from imagecatcher.config import Config
from imagecatcher.storage import ContentStore, StoreError
from imagecatcher.storage.fs import FileStore, store_path_from_url
from imagecatcher.storage.s3 import S3Store
from imagecatcher.storage.sproxyd import SproxydStore, parse_sproxyd_url


def _s3_bucket(url: str) -> str:
    parts = urlsplit(url)
    if (
        not parts.netloc
        or parts.path.strip("/")
        or parts.query
        or parts.fragment
        or "@" in parts.netloc
    ):
        raise StoreError(
            f"CONTENT_STORE_URL: {url!r}: expected s3://<bucket> (no path or query)"
        )
    return parts.netloc


def open_store(
    config: Config, reactor: Any, client: HTTPClient, threadpool: ThreadPool
) -> ContentStore:
    """The content store ``config.content_store_url`` names.

    ``reactor`` is the clock for deadlines and runs the thread-pool results;
    ``client`` carries sproxyd and S3 traffic; ``threadpool`` does file I/O.
    """
    url = config.content_store_url
    try:
        if url.startswith("file:"):
            return FileStore(store_path_from_url(url), reactor, threadpool)
        if url.startswith("sproxyd://"):
            return SproxydStore(
                client,
                reactor,
                parse_sproxyd_url(url),
                config.scality_rings_mapping,
                config.scality_host,
            )
        if url.startswith("s3://"):
            endpoint = (
                config.s3_endpoint_url or f"https://s3.{config.s3_region}.amazonaws.com"
            )
            return S3Store(
                client,
                reactor,
                _s3_bucket(url),
                endpoint,
                config.s3_access_key_id,
                config.s3_secret_access_key,
                config.s3_region,
            )
    except StoreError as e:
        if str(e).startswith("CONTENT_STORE_URL"):
            raise
        raise StoreError(f"CONTENT_STORE_URL {url!r}: {e}") from e
    raise StoreError(
        f"CONTENT_STORE_URL: unsupported store URL {url!r}"
        " (expected file:<dir>, sproxyd://host:port/proxy/<driver> or s3://<bucket>)"
    )
