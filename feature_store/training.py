"""Training hand-off: PyTorch datasets over a retrieval result, and WebDataset shards with a manifest.

A retrieval result (:func:`feature_store.retrieval.get_historical_features`) is an Arrow table: one row
per training example, feature columns, and optionally a column of raw-object URIs (the image, the
DICOM instance) in the feature store's object store.

- :class:`FeatureIterableDataset` shards the rows by distributed rank and by DataLoader worker
  (``rows[rank::world][worker::workers]``), shuffles them with a seed and an epoch
  (:meth:`~FeatureIterableDataset.set_epoch`; the same seed and epoch give the same order on every
  machine), and fetches raw objects lazily, one example at a time, from S3 or the local store.
- :class:`FeatureMapDataset` is the map-style twin, for ``DistributedSampler`` and friends.
- :func:`export_webdataset` writes the rows as WebDataset tar shards plus ``manifest.json`` (feature-view
  versions, encoder identities, data interval, per-shard sha256 and one content hash over all of them).
  Tar members get fixed metadata (mtime 0, uid/gid 0, no user names) and a fixed order, so the same
  request gives byte-identical shards and the same content hash.

Examples are dicts: every feature column as a tensor (embeddings and numbers; float32/int64/bool),
strings and timestamps as Python values, and ``object`` with the raw bytes when an object column is given.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rosetta.core.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from feature_store.object_store import ObjectStore
    from feature_store.object_store.config import LocalObjectStoreConfig, S3ObjectStoreConfig

try:  # torch is a dependency of Rosetta; the guard only keeps this module importable for type checks
    from torch.utils.data import Dataset, IterableDataset
except ImportError:  # pragma: no cover
    Dataset = IterableDataset = object  # type: ignore[assignment,misc]


def shard_order(n_rows: int, *, seed: int, epoch: int, shuffle: bool, rank: int, world: int, worker: int,
                workers: int) -> np.ndarray:
    """The row indices one worker of one rank reads, in order: a seeded permutation (or 0..n-1), split by rank,
    then by worker.  Every row goes to exactly one (rank, worker)."""
    import numpy as np

    if not (0 <= rank < world and 0 <= worker < workers):
        raise ConfigError(f"rank {rank} of {world} / worker {worker} of {workers} is out of range", setting="rank")
    order = np.random.default_rng([seed, epoch]).permutation(n_rows) if shuffle else np.arange(n_rows)
    return order[rank::world][worker::workers]


def _distributed() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


@dataclass
class _Rows:
    """The table's columns as Python-friendly arrays, built once per process."""

    table: pa.Table
    feature_columns: list[str]
    object_column: str | None

    def example(self, index: int, store: ObjectStore | None) -> dict[str, Any]:
        import numpy as np
        import pyarrow as pa
        import torch

        out: dict[str, Any] = {}
        for name in self.feature_columns:
            column = self.table.column(name)
            value = column[index]
            if not value.is_valid:
                out[name] = None
            elif pa.types.is_fixed_size_list(column.type) or pa.types.is_list(column.type):
                out[name] = torch.from_numpy(np.array(value.values.to_numpy(zero_copy_only=False), np.float32))
            elif pa.types.is_floating(column.type):
                out[name] = torch.tensor(value.as_py(), dtype=torch.float32)
            elif pa.types.is_integer(column.type) or pa.types.is_boolean(column.type):
                out[name] = torch.tensor(value.as_py())
            else:
                out[name] = value.as_py()
        if self.object_column is not None:
            uri = self.table.column(self.object_column)[index].as_py()
            if uri is None or store is None:
                out["object"] = None
            else:
                out["object"] = store.read_bytes(store.key_for(uri) if "://" in uri else uri)
        return out


class FeatureIterableDataset(IterableDataset):
    """Rows of a retrieval result, sharded by rank and worker, shuffled by seed and epoch, objects fetched lazily.

    ``rank``/``world_size`` default to ``torch.distributed``'s when it is initialised (else 0 of 1).
    ``object_store``: the config of the store the object URIs point into (each worker opens its own client).
    """

    def __init__(self, table: pa.Table, *, features: Sequence[str] | None = None, object_column: str | None = None,
                 object_store: LocalObjectStoreConfig | S3ObjectStoreConfig | None = None, shuffle: bool = True,
                 seed: int = 0, rank: int | None = None, world_size: int | None = None) -> None:
        _check_columns(table, features, object_column)
        if object_column is not None and object_store is None:
            raise ConfigError("object_column needs object_store (the config of the store the URIs point into)",
                              setting="object_store")
        self.table = table
        self.features = list(features) if features is not None else _default_features(table, object_column)
        self.object_column, self.object_store = object_column, object_store
        self.shuffle, self.seed, self.epoch = shuffle, seed, 0
        self.rank, self.world_size = rank, world_size

    def set_epoch(self, epoch: int) -> None:
        """A new order for the next pass (call it on every rank with the same epoch)."""
        self.epoch = epoch

    def _placement(self) -> tuple[int, int, int, int]:
        from torch.utils.data import get_worker_info

        rank, world = (self.rank, self.world_size) if self.rank is not None and self.world_size is not None \
            else _distributed()
        info = get_worker_info()
        return rank, world, (info.id if info else 0), (info.num_workers if info else 1)

    def indices(self) -> np.ndarray:
        """The row indices this process (rank, worker) yields this epoch."""
        rank, world, worker, workers = self._placement()
        return shard_order(self.table.num_rows, seed=self.seed, epoch=self.epoch, shuffle=self.shuffle, rank=rank,
                           world=world, worker=worker, workers=workers)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        rows = _Rows(self.table, self.features, self.object_column)
        store = _open(self.object_store)
        try:
            for index in self.indices().tolist():
                yield rows.example(index, store)
        finally:
            if store is not None:
                store.close()


class FeatureMapDataset(Dataset):
    """Map-style access to the rows of a retrieval result (``dataset[i]``), objects fetched on access."""

    def __init__(self, table: pa.Table, *, features: Sequence[str] | None = None, object_column: str | None = None,
                 object_store: LocalObjectStoreConfig | S3ObjectStoreConfig | None = None) -> None:
        _check_columns(table, features, object_column)
        self.table = table
        self.features = list(features) if features is not None else _default_features(table, object_column)
        self.object_column, self.object_store = object_column, object_store
        self._store: ObjectStore | None = None

    def __len__(self) -> int:
        return int(self.table.num_rows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        if self._store is None and self.object_store is not None:
            self._store = _open(self.object_store)
        return _Rows(self.table, self.features, self.object_column).example(index, self._store)


# -- WebDataset export ------------------------------------------------------------------------------------
def export_webdataset(table: pa.Table, out_dir: str | Path, *, key_column: str, lineage: dict[str, Any],
                      features: Sequence[str] | None = None, object_column: str | None = None,
                      object_store: LocalObjectStoreConfig | S3ObjectStoreConfig | None = None,
                      object_extension: str = "bin", shard_rows: int = 1000) -> dict[str, Any]:
    """Write ``table`` as ``out_dir/shard-NNNNNN.tar`` plus ``manifest.json``; returns the manifest.

    Each example ``<key>`` has ``<key>.features.json`` (scalars), ``<key>.<feature>.npy`` per vector feature
    and ``<key>.<object_extension>`` (the raw object).  Rows go in ``key_column`` order, so the shards do
    not depend on the order of ``table``.  ``lineage``: what the manifest records about the request (feature
    views and versions, encoder identities, data interval...); it must be JSON.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    _check_columns(table, features, object_column)
    if key_column not in table.column_names:
        raise ConfigError(f"no key column {key_column!r} (columns: {', '.join(table.column_names)})",
                          setting="key_column")
    keys = table.column(key_column)
    if keys.null_count or pc.count_distinct(keys).as_py() != table.num_rows:
        raise ConfigError(f"key column {key_column!r} must be unique and never null: it names each example",
                          setting="key_column")
    chosen = list(features) if features is not None else _default_features(table, object_column)
    table = table.take(pc.sort_indices(table, sort_keys=[(key_column, "ascending")]))
    names = [_safe_key(str(k)) for k in table.column(key_column).to_pylist()]
    if len(set(names)) != len(names):
        raise ConfigError(f"key column {key_column!r} has keys that differ only in characters a tar member name "
                          "cannot hold (kept: letters, digits, '-', '_'); use another key column", setting="key_column")
    rows = _Rows(table, [], object_column)
    store = _open(object_store)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    shards = []
    try:
        for number, start in enumerate(range(0, max(table.num_rows, 1), shard_rows)):
            if start >= table.num_rows:
                break
            path = out / f"shard-{number:06d}.tar"
            buffer = io.BytesIO()
            with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
                for index in range(start, min(start + shard_rows, table.num_rows)):
                    key = names[index]
                    scalars: dict[str, Any] = {}
                    for name in chosen:
                        column = table.column(name)
                        value = column[index]
                        if pa.types.is_fixed_size_list(column.type) or pa.types.is_list(column.type):
                            if value.is_valid:
                                array = np.asarray(value.values.to_numpy(zero_copy_only=False), np.float32)
                                _add(tar, f"{key}.{name}.npy", _npy(array))
                            else:
                                scalars[name] = None
                        else:
                            scalars[name] = _jsonable(value.as_py())
                    _add(tar, f"{key}.features.json", json.dumps(scalars, sort_keys=True).encode())
                    if object_column is not None:
                        data = rows.example(index, store)["object"]
                        if data is not None:
                            _add(tar, f"{key}.{object_extension}", data)
            data = buffer.getvalue()
            path.write_bytes(data)
            shards.append({"name": path.name, "examples": min(shard_rows, table.num_rows - start),
                           "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)})
    finally:
        if store is not None:
            store.close()
    content = hashlib.sha256(json.dumps(shards, sort_keys=True).encode()).hexdigest()
    manifest = {"format": "webdataset", "examples": table.num_rows, "key_column": key_column,
                "features": chosen, "object_column": object_column, "shards": shards, "content_sha256": content,
                "lineage": lineage}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
    return manifest


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname = len(data), 0, 0o644, 0, 0, "", ""
    tar.addfile(info, io.BytesIO(data))


def _npy(array: np.ndarray) -> bytes:
    import numpy as np

    out = io.BytesIO()
    np.save(out, array, allow_pickle=False)
    return out.getvalue()


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    return value


def _safe_key(key: str) -> str:
    """An example key usable as a tar member prefix (WebDataset splits names at the first dot)."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in key)


def _default_features(table: pa.Table, object_column: str | None) -> list[str]:
    return [c for c in table.column_names if c != object_column]


def _check_columns(table: pa.Table, features: Sequence[str] | None, object_column: str | None) -> None:
    wanted = [*(features or []), *([object_column] if object_column else [])]
    missing = [c for c in wanted if c not in table.column_names]
    if missing:
        raise ConfigError(f"the retrieval result has no column {', '.join(map(repr, missing))} (it has "
                          f"{', '.join(table.column_names)})", setting="features")


def _open(config: LocalObjectStoreConfig | S3ObjectStoreConfig | None) -> ObjectStore | None:
    if config is None:
        return None
    from feature_store.object_store import open_object_store

    return open_object_store(config)
