"""Alignment bigger than memory: Parquet in, Parquet out, one chunk of keys at a time.

Rows of different ``by`` keys never pair, so aligning key chunk by key chunk is exact.  One pass over
the first ``by`` column of each side counts the rows per key (in batches, never the whole column at
once); the keys are cut into chunks of about ``rows_per_chunk`` rows; each chunk is read with a
filter on that column (row groups whose statistics exclude the chunk are skipped, which makes
key-sorted files cheap), aligned with :func:`~transforms.alignment.align.align` and written as one
part.  Peak memory is about one chunk's rows, whatever the total.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from rosetta.core.errors import ConfigError
from transforms.alignment.align import AlignSpec, align


def key_counts(path: str | Path, column: str, *, batch_rows: int = 1 << 20) -> Counter[Any]:
    """Rows per value of ``column`` in a Parquet file or folder, read in batches."""
    import pyarrow.dataset as ds

    counts: Counter[Any] = Counter()
    for batch in ds.dataset(str(path), format="parquet").to_batches(columns=[column], batch_size=batch_rows):
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
                  rows_per_chunk: int = 5_000_000) -> dict[str, Any]:
    """Align two Parquet datasets chunk by key chunk into ``out_dir/part-NNNNN.parquet``; returns counts."""
    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    if not spec.by:
        raise ConfigError("aligning in chunks needs by keys (rows of different keys never pair)", setting="by")
    if spec.how == "left":
        raise ConfigError("aligning in chunks writes pairs only; use how='inner'", setting="how")
    key = spec.by[0]
    counts = key_counts(left, key) + key_counts(right, key)
    chunks = key_chunks(counts, rows_per_chunk)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    left_ds, right_ds = ds.dataset(str(left), format="parquet"), ds.dataset(str(right), format="parquet")
    pairs = 0
    for number, keys in enumerate(chunks):
        selected = ds.field(key).isin(pa.array(keys, left_ds.schema.field(key).type))
        part = align(left_ds.to_table(filter=selected), right_ds.to_table(filter=selected), spec)
        pq.write_table(part, out / f"part-{number:05d}.parquet")
        pairs += part.num_rows
    return {"chunks": len(chunks), "pairs": pairs, "keys": len(counts), "rows": sum(counts.values())}
