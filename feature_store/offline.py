"""The offline store: feature values as Parquet datasets on the object store (S3 or a local folder).

Layout, one dataset per feature-view *version* (so a new encoder never overwrites the old values)::

    <root>/offline/<view>/<version>/date=YYYY-MM-DD/part-<run>.parquet

partitioned by the UTC date of the event time (Hive style, so a time range reads only its days).
Columns: the view's join keys, ``event_time`` (when the value was true), ``ingest_time`` (when Rosetta
learned it; both UTC microseconds), then the features: an embedding view has ``embedding`` as a
``fixed_size_list<float32>[dimension]``, other views their declared columns.

Writes are idempotent per run: a run writes ``part-<run>.parquet`` in each of its days, and writing
the same run again replaces those files, never adds duplicates.  The store is reached through
Arrow's filesystems (``S3FileSystem`` with the feature store's endpoint and credentials, or the
local one), which is how Spark, DuckDB and Trino read the same files.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from rosetta.core.errors import ConfigError

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.fs as pafs

    from feature_store.object_store.config import LocalObjectStoreConfig, S3ObjectStoreConfig
    from schemas.features import FeatureView

EVENT_TIME, INGEST_TIME, EMBEDDING = "event_time", "ingest_time", "embedding"
TS = ("us", "UTC")
_MICROSECOND = timedelta(microseconds=1)
_RUN = re.compile(r"^[A-Za-z0-9_.:+-]{1,200}$")
_TYPES = {"float32": "float32", "float64": "float64", "int64": "int64", "bool": "bool_", "string": "string"}


def join_keys(view: FeatureView, entities: dict[str, tuple[str, ...]]) -> list[str]:
    """The join key columns of ``view`` (its entities' keys, in order)."""
    keys: list[str] = []
    for entity in view.entities:
        keys += [k for k in entities[entity] if k not in keys]
    return keys


def view_schema(view: FeatureView, keys: list[str]) -> pa.Schema:
    """The stored schema of a view's values."""
    import pyarrow as pa

    ts = pa.timestamp(*TS)
    fields = [pa.field(k, pa.string()) for k in keys]
    fields += [pa.field(EVENT_TIME, ts, nullable=False), pa.field(INGEST_TIME, ts, nullable=False)]
    if view.kind == "embedding":
        assert view.dimension is not None
        fields.append(pa.field(EMBEDDING, pa.list_(pa.float32(), view.dimension)))
    for feature in view.features:
        dtype = ts if feature.dtype == "timestamp" else (
            pa.list_(pa.float32()) if feature.dtype == "embedding" else getattr(pa, _TYPES[feature.dtype])())
        fields.append(pa.field(feature.name, dtype))
    return pa.schema(fields)


class OfflineStore:
    """Feature values per view version, as Parquet on an Arrow filesystem under ``base``."""

    def __init__(self, filesystem: pafs.FileSystem, base: str) -> None:
        self.fs = filesystem
        self.base = base.rstrip("/")

    @classmethod
    def from_config(cls, config: LocalObjectStoreConfig | S3ObjectStoreConfig) -> OfflineStore:
        """The offline store inside the feature store's object store (same bucket/prefix or folder)."""
        import pyarrow.fs as pafs

        if config.kind == "local":
            root = config.root.expanduser().resolve()
            root.mkdir(parents=True, exist_ok=True)
            return cls(pafs.LocalFileSystem(), str(root))
        secret = config.aws_secret_access_key.get_secret_value() if config.aws_secret_access_key else None
        endpoint = config.endpoint_url or None
        scheme = None
        if endpoint and "://" in endpoint:
            scheme, endpoint = endpoint.split("://", 1)
        filesystem = pafs.S3FileSystem(access_key=config.aws_access_key_id, secret_key=secret,
                                       region=config.region_name, endpoint_override=endpoint, scheme=scheme or "https")
        return cls(filesystem, "/".join(p for p in (config.bucket, config.prefix.strip("/")) if p))

    def path(self, view: FeatureView) -> str:
        return f"{self.base}/offline/{view.name}/{view.version}"

    # -- writing ---------------------------------------------------------------------------------------
    def write(self, view: FeatureView, keys: list[str], table: pa.Table, run_id: str, *,
              ingest_time: datetime | None = None) -> int:
        """Store ``table`` (join keys, ``event_time``, features; ``ingest_time`` added as ``ingest_time`` or now
        when absent) as the values of ``view`` from run ``run_id``; returns the rows written.

        ConfigError naming the column and the fix when the table does not fit the view's schema.
        """
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        if not _RUN.match(run_id):
            raise ConfigError(f"run id {run_id!r} cannot name a file; use letters, digits and _.:+-", setting="run_id")
        schema = view_schema(view, keys)
        if INGEST_TIME not in table.column_names:
            moment = (ingest_time or datetime.now(UTC)).astimezone(UTC)
            micros = (moment - datetime(1970, 1, 1, tzinfo=UTC)) // _MICROSECOND
            table = table.append_column(INGEST_TIME, pa.array(np.full(table.num_rows, micros, dtype=np.int64))
                                        .cast(pa.timestamp(*TS)))
        table = _conform(table, schema, view)
        days = pc.strftime(table.column(EVENT_TIME), format="%Y-%m-%d")
        for day in sorted(set(days.to_pylist())):
            part = table.filter(pc.equal(days, day))
            folder = f"{self.path(view)}/date={day}"
            if self.fs.type_name == "local":  # object stores have no folders: no marker objects there
                self.fs.create_dir(folder, recursive=True)
            pq.write_table(part, f"{folder}/part-{run_id}.parquet", filesystem=self.fs)
        return table.num_rows

    # -- reading ---------------------------------------------------------------------------------------
    def read(self, view: FeatureView, keys: list[str], *, start: datetime | None = None,
             end: datetime | None = None, columns: list[str] | None = None,
             entities: dict[str, Sequence[str]] | None = None) -> pa.Table:
        """The stored values of ``view`` with ``start <= event_time < end`` (either bound optional); only the
        days in range are read.  ``entities`` (join key -> values) keeps only those entities' rows.  An empty
        table of the view's schema when nothing is stored."""
        import pyarrow.dataset as ds

        schema = view_schema(view, keys)
        wanted = columns or schema.names
        try:
            info = self.fs.get_file_info(self.path(view))
        except OSError:
            info = None
        if info is None or info.type.name != "Directory":
            return schema.empty_table().select(wanted)
        dataset = ds.dataset(self.path(view), filesystem=self.fs, format="parquet",
                             schema=schema.append(_date_schema().field("date")),
                             partitioning=ds.partitioning(flavor="hive", schema=_date_schema()))
        condition = None
        for bound, op in ((start, "ge"), (end, "lt")):
            if bound is None:
                continue
            moment = bound.astimezone(UTC)
            day_test = ds.field("date") >= moment.strftime("%Y-%m-%d") if op == "ge" else \
                ds.field("date") <= moment.strftime("%Y-%m-%d")
            time_test = ds.field(EVENT_TIME) >= moment if op == "ge" else ds.field(EVENT_TIME) < moment
            both = day_test & time_test
            condition = both if condition is None else condition & both
        for key, values in (entities or {}).items():
            if key not in keys:
                raise ConfigError(f"feature view {view.name!r} has no join key {key!r} (it has {', '.join(keys)})",
                                  setting=key)
            test = ds.field(key).isin(list(values))
            condition = test if condition is None else condition & test
        return dataset.to_table(columns=wanted, filter=condition)


def _date_schema() -> pa.Schema:
    import pyarrow as pa

    return pa.schema([pa.field("date", pa.string())])


def _conform(table: pa.Table, schema: pa.Schema, view: FeatureView) -> pa.Table:
    """``table`` with exactly ``schema``'s columns, cast where it is safe; ConfigError otherwise."""
    import pyarrow as pa

    missing = [name for name in schema.names if name not in table.column_names]
    if missing:
        raise ConfigError(f"values for feature view {view.name!r} lack column(s) {', '.join(missing)} "
                          f"(it stores {', '.join(schema.names)})", setting=view.name)
    columns = []
    for field in schema:
        column = table.column(field.name)
        if pa.types.is_timestamp(field.type) and (not pa.types.is_timestamp(column.type) or column.type.tz is None):
            raise ConfigError(f"column {field.name!r} of feature view {view.name!r} must be a timezone-aware "
                              f"timestamp, not {column.type}", setting=field.name)
        if field.name == EMBEDDING:
            size = getattr(column.type, "list_size", None)
            lengths = {len(v) for v in column.to_pylist()[:1000] if v is not None} if size is None else {size}
            if lengths - {view.dimension}:
                raise ConfigError(f"embeddings for feature view {view.name!r} have {sorted(lengths)} dimensions, the "
                                  f"view says {view.dimension}; a different encoder needs a new view version",
                                  setting=EMBEDDING)
        try:
            columns.append(column.cast(field.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise ConfigError(f"column {field.name!r} of feature view {view.name!r} is {column.type}, which does "
                              f"not convert to {field.type} ({exc})", setting=field.name) from None
        if not field.nullable and column.null_count:
            raise ConfigError(f"column {field.name!r} of feature view {view.name!r} has {column.null_count} null "
                              "value(s); every value needs an event and an ingest time", setting=field.name)
    return pa.Table.from_arrays(columns, schema=schema)
