"""Arrow schemas for the tables Rosetta writes.  pyarrow is imported on first use."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa


@cache
def manifest_schema() -> pa.Schema:
    """Schema of the object manifest (one row per raw object)."""
    import pyarrow as pa

    ts = pa.timestamp("us", tz="UTC")
    return pa.schema([
        pa.field("sample_id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("source_id", pa.string(), nullable=False),
        pa.field("role", pa.string(), nullable=False),
        pa.field("key", pa.string(), nullable=False),
        pa.field("uri", pa.string(), nullable=False),
        pa.field("sha256", pa.string(), nullable=False),
        pa.field("size_bytes", pa.int64(), nullable=False),
        pa.field("media_type", pa.string(), nullable=False),
        pa.field("event_time", ts, nullable=False),
        pa.field("ingest_time", ts, nullable=False),
        pa.field("run_id", pa.string(), nullable=False),
    ])


@cache
def quarantine_schema() -> pa.Schema:
    """Schema of the quarantine ledger (one row per rejected record)."""
    import pyarrow as pa

    ts = pa.timestamp("us", tz="UTC")
    return pa.schema([
        pa.field("source", pa.string(), nullable=False),
        pa.field("source_id", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("stage", pa.string(), nullable=False),
        pa.field("uri", pa.string()),
        pa.field("sha256", pa.string()),
        pa.field("size_bytes", pa.int64()),
        pa.field("ingest_time", ts, nullable=False),
        pa.field("run_id", pa.string(), nullable=False),
    ])


@cache
def embedding_schema() -> pa.Schema:
    """Schema of staged embeddings: one row per (sample, modality), vector as a list."""
    import pyarrow as pa

    ts = pa.timestamp("us", tz="UTC")
    return pa.schema([
        pa.field("point_id", pa.string(), nullable=False),
        pa.field("sample_id", pa.string(), nullable=False),
        pa.field("modality", pa.string(), nullable=False),
        pa.field("vector", pa.list_(pa.float32()), nullable=False),
        pa.field("encoder", pa.string(), nullable=False),  # JSON of EncoderIdentity
        pa.field("payload", pa.string(), nullable=False),  # JSON lineage payload
        pa.field("event_time", ts, nullable=False),
    ])


@cache
def record_schema() -> pa.Schema:
    """Schema of the record catalog (one row per ingested record)."""
    import pyarrow as pa

    ts = pa.timestamp("us", tz="UTC")
    return pa.schema([
        pa.field("sample_id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("source_id", pa.string(), nullable=False),
        pa.field("event_time", ts, nullable=False),
        pa.field("event_time_origin", pa.string(), nullable=False),
        pa.field("text", pa.string()),
        pa.field("keys", pa.string(), nullable=False),  # JSON object of entity keys
        pa.field("metadata", pa.string(), nullable=False),  # JSON object
        pa.field("objects", pa.string(), nullable=False),  # JSON object: role -> {uri, sha256, media_type}
        pa.field("ingest_time", ts, nullable=False),
        pa.field("run_id", pa.string(), nullable=False),
    ])


def series_schema() -> pa.Schema:
    """Schema of the series ledger: one row per DICOM series declared complete."""
    import pyarrow as pa

    ts = pa.timestamp("us", tz="UTC")
    return pa.schema([
        pa.field("source", pa.string(), nullable=False),
        pa.field("study_uid", pa.string(), nullable=False),
        pa.field("series_uid", pa.string(), nullable=False),
        pa.field("instances", pa.int64(), nullable=False),
        pa.field("expected", pa.int64()),
        pa.field("reason", pa.string(), nullable=False),  # expected-count or quiet-period
        pa.field("first_ingest", ts, nullable=False),
        pa.field("last_ingest", ts, nullable=False),
        pa.field("completed_at", ts, nullable=False),
        pa.field("modality", pa.string(), nullable=False),
        pa.field("run_id", pa.string(), nullable=False),
    ])
