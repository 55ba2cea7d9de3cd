"""Helpers shared by the DAG tests."""

from __future__ import annotations

from typing import Any


def asset_events(uri: str) -> list[Any]:
    """The Asset events recorded for ``uri`` in the test session's Airflow metadata DB."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        events = session.scalars(select(AssetEvent).join(AssetModel, AssetEvent.asset_id == AssetModel.id)
                                 .where(AssetModel.uri == uri)).all()
        session.expunge_all()
        return list(events)


def apply_cam_views(fs: Any, source: str = "cams") -> None:
    """Register a caption (MiniLM) and an image (EfficientNet-Lite0) embedding view of ``source``, as
    ``rosetta features apply`` would: ``cam_captions`` and ``cam_images``."""
    from schemas.features import FeatureDefinitions

    fs.registry.apply(FeatureDefinitions.model_validate({
        "entities": [{"name": "sample", "join_keys": ["sample_id"]}],
        "feature_views": [
            {"name": "cam_captions", "entities": ["sample"], "kind": "embedding", "source": source,
             "modality": "text", "dimension": 384, "encoder": {"kind": "hf-mean-pool", "name": "all-MiniLM-L6-v2"}},
            {"name": "cam_images", "entities": ["sample"], "kind": "embedding", "source": source,
             "modality": "image", "dimension": 1280,
             "encoder": {"kind": "efficientnet-lite0", "name": "efficientnet-lite0"}}]}))
