"""Rosetta's feature store: object store, manifest, vector store and lookups.

No Airflow and no connectors in here: a training job can ``import feature_store``
in an image without the scheduler.  Heavy clients are built lazily.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from feature_store.store import FeatureStore, SampleFeatures

__all__ = ["FeatureStore", "SampleFeatures"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from feature_store import store

        return getattr(store, name)
    raise AttributeError(name)
