"""Per-series work after a DICOM series completes: its summary, written once per series."""

from __future__ import annotations

import json
from typing import Any

from feature_store.config import FeatureStoreConfig
from feature_store.manifest import RecordCatalog
from feature_store.object_store import open_object_store
from rosetta.core.hashing import safe_name
from rosetta.core.timeutil import isoformat_z


def summarize_series(config: FeatureStoreConfig, source: str, series: dict[str, Any]) -> dict[str, Any]:
    """Summarize one completed series from the record catalog into ``series/summaries/<source>/<uid>.json``.

    The summary: instance and frame counts, modalities, event-time range (UTC), the stored DICOM
    and image URIs.  Idempotent: the same series always writes the same key.
    """
    store = open_object_store(config.object_store)
    try:
        table = RecordCatalog(store).read(source=source)
        instances: set[str] = set()
        frames, modalities, times, dicoms, images = 0, set(), [], [], []
        for row in table.to_pylist():
            keys = json.loads(row["keys"])
            if keys.get("series_uid") != series["series_uid"]:
                continue
            metadata, objects = json.loads(row["metadata"]), json.loads(row["objects"])
            instances.add(keys.get("sop_uid", row["source_id"]))
            frames += 1 if "image" in objects else 0
            modalities.add(metadata.get("modality", ""))
            times.append(row["event_time"])
            if "dicom" in objects:
                dicoms.append(objects["dicom"]["uri"])
            if "image" in objects:
                images.append(objects["image"]["uri"])
        summary = {**series, "source": source, "instances_in_catalog": len(instances), "frames": frames,
                   "modalities": sorted(m for m in modalities if m),
                   "first_event_time": isoformat_z(min(times)) if times else None,
                   "last_event_time": isoformat_z(max(times)) if times else None,
                   "dicom_uris": sorted(set(dicoms)), "image_uris": sorted(set(images))}
        key = f"series/summaries/{safe_name(source)}/{safe_name(series['series_uid'])}.json"
        store.write_bytes(key, json.dumps(summary, sort_keys=True).encode(), media_type="application/json")
        return {"series_uid": series["series_uid"], "summary_uri": store.uri_for(key), "instances": len(instances)}
    finally:
        store.close()
