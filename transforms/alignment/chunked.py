"""Alignment bigger than memory: Parquet in, Parquet out, one chunk of keys at a time.

Rows of different ``by`` keys never pair, so aligning key chunk by key chunk is exact (a partitioned
join, as Grace hash joins and Spark's shuffles do it):

1. one pass over the first ``by`` column of each side counts the rows per key (in batches, never the
   whole column at once), and the keys are cut into chunks of about ``rows_per_chunk`` rows (both
   sides together);
2. one pass over each side's rows, in batches, appends every row to its chunk's spill file (Arrow
   IPC in ``spill_dir``, under the output folder by default); rows whose key is null match nothing
   and are not spilled;
3. each chunk's two spill files are memory-mapped, aligned with :func:`~transforms.alignment.align.align`
   and written as one Parquet part, and the spill files are removed.

Each input is read once whatever its order (a filter per chunk would re-read every row group of a
file sorted by time once per chunk).  Peak memory is about one chunk's rows plus one batch per
side; one key's rows must fit in a chunk (a key larger than ``rows_per_chunk`` is a chunk of its own).
Parts are numbered by chunk, so a re-run overwrites the same files.
"""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path
from typing import Any

from rosetta.core.errors import ConfigError
from transforms.alignment.align import AlignSpec, align

#: Scan with little read-ahead: Arrow's defaults keep 16 batches and 4 files in flight (gigabytes at 1M-row batches).
_ONE_AT_A_TIME = {"batch_readahead": 1, "fragment_readahead": 1}


def _dataset(path: str | Path) -> Any:
    """A Parquet dataset scanned without pre-buffering: with it, Arrow keeps the column chunks it read ahead of
    a large file (measured: 100 one-million-row batches of a 1.5 GB file grew the process by 1 GB)."""
    import pyarrow.dataset as ds

    scan = ds.ParquetFragmentScanOptions(pre_buffer=False)
    return ds.dataset(str(path), format=ds.ParquetFileFormat(default_fragment_scan_options=scan))


def key_counts(path: str | Path, column: str, *, batch_rows: int = 1 << 20) -> Counter[Any]:
    """Rows per value of ``column`` in a Parquet file or folder, read in batches."""
    counts: Counter[Any] = Counter()
    dataset = _dataset(path)
    for batch in dataset.to_batches(columns=[column], batch_size=batch_rows, **_ONE_AT_A_TIME):
        table = batch.column(0).value_counts()
        counts.update(dict(zip(table.field("values").to_pylist(), table.field("counts").to_pylist(), strict=True)))
    return counts


def key_chunks(counts: Counter[Any], rows_per_chunk: int) -> list[list[Any]]:
    """Keys (sorted; nulls left out: they match nothing) grouped so each group holds about ``rows_per_chunk`` rows."""
    chunks: list[list[Any]] = []
    current: list[Any] = []
    rows = 0
    for key in sorted(k for k in counts if k is not None):
        current.append(key)
        rows += counts[key]
        if rows >= rows_per_chunk:
            chunks.append(current)
            current, rows = [], 0
    if current:
        chunks.append(current)
    return chunks


def align_parquet(left: str | Path, right: str | Path, spec: AlignSpec, out_dir: str | Path, *,
                  rows_per_chunk: int = 5_000_000, batch_rows: int = 1 << 20,
                  spill_dir: str | Path | None = None) -> dict[str, Any]:
    """Align two Parquet datasets chunk by key chunk into ``out_dir/part-NNNNN.parquet``; returns counts."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not spec.by:
        raise ConfigError("aligning in chunks needs by keys (rows of different keys never pair)", setting="by")
    if spec.how == "left":
        raise ConfigError("aligning in chunks writes pairs only; use how='inner'", setting="how")
    key = spec.by[0]
    counts = key_counts(left, key, batch_rows=batch_rows) + key_counts(right, key, batch_rows=batch_rows)
    chunks = key_chunks(counts, rows_per_chunk)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    spill = Path(spill_dir) if spill_dir is not None else out / ".spill"
    shutil.rmtree(spill, ignore_errors=True)  # what a failed run left behind
    spill.mkdir(parents=True)
    try:
        sides = {}
        for name, path in (("left", left), ("right", right)):
            dataset = _dataset(path)
            keys = pa.array([k for chunk in chunks for k in chunk], dataset.schema.field(key).type)
            chunk_of_key = pa.array([n for n, chunk in enumerate(chunks) for _ in chunk], pa.int32())
            sides[name] = _partition(dataset, key, keys, chunk_of_key, len(chunks), spill / name, batch_rows)
        pairs = 0
        for number in range(len(chunks)):
            part = align(_read_spill(sides["left"][number]), _read_spill(sides["right"][number]), spec)
            pq.write_table(part, out / f"part-{number:05d}.parquet")
            pairs += part.num_rows
            del part
            for name in sides:
                sides[name][number].unlink()
    finally:
        shutil.rmtree(spill, ignore_errors=True)
    return {"chunks": len(chunks), "pairs": pairs, "keys": len(counts), "rows": sum(counts.values())}


def _partition(dataset: Any, key: str, keys: Any, chunk_of_key: Any, n_chunks: int, folder: Path,
               batch_rows: int) -> list[Path]:
    """Append each row of ``dataset`` to its key chunk's Arrow IPC file in ``folder``; the files, by chunk."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    folder.mkdir(parents=True)
    paths = [folder / f"chunk-{n:05d}.arrow" for n in range(n_chunks)]
    writers = [pa.ipc.new_file(str(p), dataset.schema) for p in paths]
    try:
        for batch in dataset.to_batches(batch_size=batch_rows, **_ONE_AT_A_TIME):
            index = pc.index_in(batch.column(batch.schema.get_field_index(key)), value_set=keys)
            chunk = np.asarray(pc.take(chunk_of_key, index).fill_null(-1).to_numpy(zero_copy_only=False))
            order = np.argsort(chunk, kind="stable")  # rows of one chunk together, in their input order
            bounds = np.searchsorted(chunk[order], np.arange(n_chunks + 1))
            taken = batch.take(pa.array(order))
            for n in range(n_chunks):
                if bounds[n + 1] > bounds[n]:
                    writers[n].write_batch(taken.slice(int(bounds[n]), int(bounds[n + 1] - bounds[n])))
    finally:
        for writer in writers:
            writer.close()
    return paths


def _read_spill(path: Path) -> Any:
    """A spill file as a table, memory-mapped (its pages are read as the alignment touches them)."""
    import pyarrow as pa

    with pa.memory_map(str(path)) as source:
        return pa.ipc.open_file(source).read_all()
