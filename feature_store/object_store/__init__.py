"""Object storage for raw objects, manifests and staging files.

One interface (:class:`~feature_store.object_store.base.ObjectStore`), two
backends with the same key layout: a local directory (the embedded default) and
any S3-compatible service.  Backends are imported when first opened.
"""

from __future__ import annotations

from feature_store.object_store.base import ObjectStore
from feature_store.object_store.config import (
    LocalObjectStoreConfig,
    ObjectStoreConfig,
    S3ObjectStoreConfig,
    object_store_config_from_url,
    open_object_store,
)

__all__ = [
    "LocalObjectStoreConfig",
    "ObjectStore",
    "ObjectStoreConfig",
    "S3ObjectStoreConfig",
    "object_store_config_from_url",
    "open_object_store",
]
