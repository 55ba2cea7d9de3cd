"""Alignment bigger than memory: 100 million image rows against 100 million text rows, peak RSS under 4 GB.

    .venv/bin/python benchmarks/bench_alignment_chunked.py                    # 100M x 100M, 1,000 keys
    .venv/bin/python benchmarks/bench_alignment_chunked.py --rows 5000000     # a quick look

1. The data is generated batch by batch (never whole in memory) and cached as Parquet under
   .bench/alignment-chunked/<rows>-<keys>-s<seed>/: ``image.parquet`` and ``text.parquet``, sorted by
   time as event logs are, columns ``key`` ("k0042"), ``time`` (UTC microseconds over one day) and ``id``
   ("i000000042" / "t000000042", a permutation of the row numbers).  About 5% of the text rows of each
   batch copy the key and time of another (ties).
2. :func:`transforms.alignment.chunked.align_parquet` runs in a fresh subprocess: backward as-of by key,
   inner join, ``--rows-per-chunk`` rows per key chunk.  Wall time and the subprocess's peak RSS
   (``ru_maxrss``; the parent stays small) are reported.
3. Check: for ``--check-keys`` keys (seeded), their rows are read from the inputs and aligned in memory
   in one pass; the chunked output's rows of those keys must be equal.

Exit code 0 only if the check passes and peak RSS is under ``--limit-gb``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

DAY_US = 86_400_000_000
ORIGIN_US = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z
TIE_FRACTION = 0.05
BATCH = 1_000_000


def spec() -> Any:
    from transforms.alignment import AlignSpec

    return AlignSpec(strategy="backward", by=("key",), left_time="time", right_time="time", left_id="id",
                     right_id="id", how="inner")


def make_data(folder: Path, rows: int, keys: int, seed: int) -> None:
    """``image.parquet`` and ``text.parquet``, written one time-ordered batch at a time."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    if (folder / ".complete").exists():
        return
    folder.mkdir(parents=True, exist_ok=True)
    names = pa.array([f"k{k:04d}" for k in range(keys)])
    schema = pa.schema([("key", pa.string()), ("time", pa.timestamp("us", tz="UTC")), ("id", pa.string())])
    multiplier = 2_654_435_761  # odd and not dividing 10**k: a bijection of 0..rows-1 when gcd(multiplier, rows) = 1
    while np.gcd(multiplier, rows) != 1:
        multiplier += 2
    for side, prefix, offset in (("image", "i", 0), ("text", "t", 1)):
        rng = np.random.default_rng(seed + offset)
        with pq.ParquetWriter(folder / f"{side}.parquet", schema) as writer:
            for start in range(0, rows, BATCH):
                n = min(BATCH, rows - start)
                low = start * DAY_US // rows
                high = (start + n) * DAY_US // rows
                time_us = rng.integers(low, max(high, low + 1), n, dtype=np.int64)
                key = rng.integers(0, keys, n, dtype=np.int64)
                if side == "text":
                    copies = rng.choice(n, int(n * TIE_FRACTION), replace=False)
                    sources = rng.integers(0, n, len(copies))
                    time_us[copies], key[copies] = time_us[sources], key[sources]
                order = np.argsort(time_us, kind="stable")
                time_us, key = time_us[order], key[order]
                numbers = (np.arange(start, start + n, dtype=np.int64) * multiplier) % rows
                ids = pc.binary_join_element_wise(prefix, pc.utf8_lpad(pa.array(numbers).cast(pa.string()), 9, "0"),
                                                  "")
                writer.write_table(pa.table({
                    "key": names.take(pa.array(key)),
                    "time": pa.array(time_us + ORIGIN_US, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
                    "id": ids}, schema=schema), row_group_size=BATCH)
    (folder / ".complete").touch()


def run_chunked(folder: Path, out: Path, rows_per_chunk: int) -> dict[str, Any]:
    from transforms.alignment.chunked import align_parquet

    start = time.perf_counter()
    counts = align_parquet(folder / "image.parquet", folder / "text.parquet", spec(), out,
                           rows_per_chunk=rows_per_chunk)
    return {**counts, "wall_s": round(time.perf_counter() - start, 1),
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def check(folder: Path, out: Path, keys: int, check_keys: int, seed: int) -> dict[str, Any]:
    """The chunked output's rows of a few keys equal one in-memory alignment of those keys' rows."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.dataset as ds

    from transforms.alignment import align

    chosen = [f"k{k:04d}" for k in np.random.default_rng(seed).choice(keys, check_keys, replace=False)]
    where = ds.field("key").isin(pa.array(chosen))
    image = ds.dataset(str(folder / "image.parquet")).to_table(filter=where)
    text = ds.dataset(str(folder / "text.parquet")).to_table(filter=where)
    expected = align(image, text, spec())
    got = ds.dataset(str(out), format="parquet").to_table(filter=where)
    order = [("key", "ascending"), ("left_time", "ascending"), ("left_id", "ascending")]
    same = got.sort_by(order).equals(expected.sort_by(order))
    return {"keys": chosen, "rows": expected.num_rows, "equal": bool(same)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000_000, help="image rows, and as many text rows")
    parser.add_argument("--keys", type=int, default=1_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--rows-per-chunk", type=int, default=5_000_000)
    parser.add_argument("--check-keys", type=int, default=3)
    parser.add_argument("--limit-gb", type=float, default=4.0)
    parser.add_argument("--work-dir", type=Path, default=REPO / ".bench")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--child", choices=("prepare", "align"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    folder = args.work_dir / "alignment-chunked" / f"{args.rows}-{args.keys}-s{args.seed}"
    out = folder / "aligned"
    if args.child == "prepare":
        make_data(folder, args.rows, args.keys, args.seed)
        return 0
    if args.child == "align":
        print(json.dumps(run_chunked(folder, out, args.rows_per_chunk)))
        return 0

    common = ["--rows", str(args.rows), "--keys", str(args.keys), "--seed", str(args.seed),
              "--work-dir", str(args.work_dir), "--rows-per-chunk", str(args.rows_per_chunk)]
    start = time.perf_counter()
    subprocess.run([sys.executable, __file__, "--child", "prepare", *common], check=True)
    size = sum(p.stat().st_size for p in folder.glob("*.parquet")) / 2**30
    print(f"data: {args.rows:,} image + {args.rows:,} text rows, {args.keys:,} keys, {size:.1f} GiB Parquet "
          f"({time.perf_counter() - start:.0f}s to prepare or find)", flush=True)
    done = subprocess.run([sys.executable, __file__, "--child", "align", *common], check=True, capture_output=True,
                          text=True)
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    figures["output_gib"] = round(sum(p.stat().st_size for p in out.glob("*.parquet")) / 2**30, 2)
    print(f"chunked alignment: {figures['wall_s']}s, peak RSS {figures['peak_rss_mib']:,} MiB, "
          f"{figures['chunks']} chunks, {figures['pairs']:,} pairs", flush=True)
    figures["check"] = check(folder, out, args.keys, args.check_keys, args.seed)
    figures.update(rows_per_side=args.rows, key_count=args.keys, rows_per_chunk=args.rows_per_chunk,
                   limit_gb=args.limit_gb)
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    ok = figures["check"]["equal"] and figures["peak_rss_mib"] < args.limit_gb * 1024
    print("targets met" if ok else "TARGETS MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
