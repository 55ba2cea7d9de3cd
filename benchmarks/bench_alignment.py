"""Alignment benchmark: Rosetta's as-of join vs DuckDB, polars and pandas on the same data, same run.

    .venv/bin/python benchmarks/bench_alignment.py                      # 10M image x 10M text rows, 1,000 keys
    .venv/bin/python benchmarks/bench_alignment.py --rows 1000000 --json figures.json
    .venv/bin/python benchmarks/bench_alignment.py --only rosetta --only polars --rounds 3

The join: for every image row, the latest text row of the same key at or before its time (as-of,
backward, many-to-one, exact times allowed, no tolerance, left join: unmatched image rows kept):

- rosetta: ``align(image, text, AlignSpec(strategy="backward", by=("key",), how="left", order="left"))``:
  one row per image row in the image table's order, as polars and pandas give them (``--order rule``:
  sorted by the rule's order instead, which gathers every output column);
- duckdb: ``SELECT ... FROM image i ASOF LEFT JOIN text t ON i.key = t.key AND i.time >= t.time``,
  fetched as an Arrow table;
- polars: ``image.join_asof(text, by="key", strategy="backward")``;
- pandas: ``pd.merge_asof(image, text, by="key", direction="backward")``.

1. The data is generated once with numpy (``--seed``) and cached as Parquet under
   .bench/alignment/<rows>-<keys>-...: ``image.parquet`` and ``text.parquet``, N rows each, columns
   ``key`` (``"k0000"``.., or with ``--key-type int`` the int64 key number), ``time`` (UTC timestamps
   in microseconds, uniform over one day) and ``id`` (``"i000000042"`` / ``"t000000042"``: a random
   permutation of 0..N-1, zero-padded so that string order is number order; ``--id-type int``: the
   int64 number).  Strings by default: they are the pipeline's types (``source_id`` is a string) and
   every engine handles them natively; int64 keys speed every engine up by about as much.  About 5% of
   text rows copy the key and time of another text row (ties: several text rows at one key and time),
   1% of image rows copy the key and time of a text row (exact matches).  Both files are stored sorted
   by time, as polars and pandas require, so no engine pays for a sort before its join (Rosetta does
   not need that order).
2. Each engine runs in its own fresh subprocess: it reads the Parquet files (not timed), then
   times only the join and reports, as JSON on stdout, the join's wall time, its RSS right before
   the join and its peak RSS (``ru_maxrss``, over the whole process; the data is prepared in a
   subprocess too, as a child's ``ru_maxrss`` starts at its parent's peak).  DuckDB and polars use every
   core (their default); Rosetta's numpy engine and pandas use one.
3. ``--rounds`` rounds, the engine order reversed every other round; times are averaged, peaks are
   the highest seen.
4. The parent checks every image row (``--check-rows 0``: all; else a seeded sample): Rosetta's
   matched text row must equal each other engine's wherever the matched text time is not a tie;
   at a tie the engines may pick any of the tied rows (Rosetta must pick the smallest id, checked in
   number order: the same as string order for the default ids; ``align`` ranks int64 ids as numbers).

Exit code 0 only if Rosetta's join time is within ``--target`` (1.25x) of the fastest engine and its peak
RSS is no higher than any other engine's.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

ENGINES = ("rosetta", "duckdb", "polars", "pandas")
CACHE_VERSION = "v1"
DAY_US = 86_400_000_000
ORIGIN_US = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z in microseconds
TIE_FRACTION = 0.05  # text rows that copy another text row's key and time
EXACT_FRACTION = 0.01  # image rows that copy a text row's key and time


# -- the data ------------------------------------------------------------------------------------
def data_dir(work: Path, rows: int, keys: int, seed: int, key_type: str, id_type: str) -> Path:
    return work / "alignment" / f"{rows}-{keys}-s{seed}-key{key_type}-id{id_type}-{CACHE_VERSION}"


def make_data(folder: Path, rows: int, keys: int, seed: int, key_type: str, id_type: str) -> Path:
    """``image.parquet`` and ``text.parquet`` (see the module docstring), cached by their parameters."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    marker = folder / ".complete"
    if marker.exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    text_key = rng.integers(0, keys, rows)
    text_time = rng.integers(0, DAY_US, rows)
    tied = rng.choice(rows, size=int(rows * TIE_FRACTION), replace=False)
    source = rng.integers(0, rows, len(tied))
    text_key[tied], text_time[tied] = text_key[source], text_time[source]
    image_key = rng.integers(0, keys, rows)
    image_time = rng.integers(0, DAY_US, rows)
    exact = rng.choice(rows, size=int(rows * EXACT_FRACTION), replace=False)
    source = rng.integers(0, rows, len(exact))
    image_key[exact], image_time[exact] = text_key[source], text_time[source]
    for name, key, times, prefix in (("image", image_key, image_time, "i"), ("text", text_key, text_time, "t")):
        order = np.argsort(times, kind="stable")
        table = pa.table({"key": _key_column(key[order], keys, key_type),
                          "time": pa.array(times[order] + ORIGIN_US, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
                          "id": _id_column(rng.permutation(rows), id_type, prefix)})
        pq.write_table(table, folder / f"{name}.parquet", row_group_size=1 << 20)
        del table, order
    marker.touch()
    return folder


def _key_column(numbers: np.ndarray, keys: int, key_type: str) -> pa.Array:
    import pyarrow as pa
    import pyarrow.compute as pc

    if key_type == "int":
        return pa.array(numbers, pa.int64())
    width = max(4, len(str(keys - 1)))
    names = pa.array([f"k{k:0{width}d}" for k in range(keys)], pa.string())
    return pc.take(names, pa.array(numbers, pa.int64()))


def _id_column(numbers: np.ndarray, id_type: str, prefix: str) -> pa.Array:
    import pyarrow as pa
    import pyarrow.compute as pc

    ids = pa.array(numbers, pa.int64())
    if id_type == "int":
        return ids
    return pc.binary_join_element_wise(prefix, pc.utf8_lpad(ids.cast(pa.string()), 9, "0"), "")


def numbers(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Ids or keys as int64 (the digits of ``"t000000042"``, ``"k0042"``, ``"42"``; nulls -> -1)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        column = pc.replace_substring_regex(column, "^[^0-9]+", "")
    as_int = pc.cast(column, pa.int64()).fill_null(-1)
    return np.asarray(as_int.to_numpy(), dtype=np.int64)


# -- one engine, in its own process --------------------------------------------------------------
def rss_kib(field: str = "VmRSS") -> int:
    """This process's resident set size now (``VmHWM``: its peak since exec), KiB (Linux)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    return 0


def peak_rss_kib() -> int:
    """Peak RSS, KiB on Linux.  It starts at the *parent's* peak (carried over by vfork + exec), hence a parent
    that stays small until every engine has run; ``VmHWM`` is reported beside it as a check."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def join_rosetta(folder: Path, order: str = "left") -> tuple[float, int, pa.Table]:
    import pyarrow.parquet as pq

    from transforms.alignment import AlignSpec, align

    image, text = pq.read_table(folder / "image.parquet"), pq.read_table(folder / "text.parquet")
    spec = AlignSpec(strategy="backward", by=("key",), left_time="time", right_time="time", left_id="id",
                     right_id="id", tolerance=None, allow_exact=True, cardinality="many_to_one", how="left",
                     order=order)  # type: ignore[arg-type]
    start = _before_join()
    out = align(image, text, spec)
    elapsed = time.perf_counter() - start
    return elapsed, out.num_rows, out.select(["left_id", "right_id"])


def join_duckdb(folder: Path) -> tuple[float, int, pa.Table]:
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    for name in ("image", "text"):
        con.execute(f"CREATE TABLE {name} AS SELECT * FROM read_parquet('{folder / f'{name}.parquet'}')")
    start = _before_join()
    out = con.execute("SELECT i.key, i.id AS left_id, i.time AS left_time, t.id AS right_id, t.time AS right_time "
                      "FROM image i ASOF LEFT JOIN text t ON i.key = t.key AND i.time >= t.time").to_arrow_table()
    elapsed = time.perf_counter() - start
    assert out is not None
    con.close()
    return elapsed, out.num_rows, out.select(["left_id", "right_id"])


def join_polars(folder: Path) -> tuple[float, int, pa.Table]:
    import polars as pl

    image = pl.read_parquet(folder / "image.parquet").with_columns(pl.col("time").set_sorted())
    text = (pl.read_parquet(folder / "text.parquet").rename({"id": "right_id", "time": "right_time"})
            .with_columns(pl.col("right_time").set_sorted()))  # stored sorted by time (see make_data)
    start = _before_join()
    out = image.join_asof(text, left_on="time", right_on="right_time", by="key", strategy="backward",
                          coalesce=False, check_sortedness=False)  # sorted by construction (set_sorted)
    elapsed = time.perf_counter() - start
    return elapsed, out.height, out.select(left_id="id", right_id="right_id").to_arrow()


def join_pandas(folder: Path) -> tuple[float, int, pa.Table]:
    import pandas as pd
    import pyarrow as pa

    image = pd.read_parquet(folder / "image.parquet")
    text = pd.read_parquet(folder / "text.parquet").rename(columns={"id": "right_id", "time": "right_time"})
    start = _before_join()
    out = pd.merge_asof(image, text, left_on="time", right_on="right_time", by="key", direction="backward")
    elapsed = time.perf_counter() - start
    pairs = pa.Table.from_pandas(out[["id", "right_id"]].rename(columns={"id": "left_id"}), preserve_index=False)
    return elapsed, len(out), pairs


JOINS = {"rosetta": join_rosetta, "duckdb": join_duckdb, "polars": join_polars, "pandas": join_pandas}
_MARKS: dict[str, int] = {}


def _before_join() -> float:
    """Collect garbage, note the RSS and the peak so far, and return the start time of the join."""
    gc.collect()
    _MARKS["rss_before_join_kib"] = rss_kib()
    _MARKS["peak_before_join_kib"] = peak_rss_kib()
    return time.perf_counter()


def run_engine(name: str, folder: Path, pairs_path: Path | None, order: str) -> dict[str, Any]:
    """Load, join (timed), measure; optionally write the (left_id, right_id) pairs after measuring."""
    import pyarrow.parquet as pq

    start = time.perf_counter()
    join_s, rows_out, pairs = join_rosetta(folder, order) if name == "rosetta" else JOINS[name](folder)
    figures: dict[str, Any] = {"engine": name, "join_s": round(join_s, 3),
                               "load_s": round(time.perf_counter() - start - join_s, 3), "rows_out": rows_out,
                               **_MARKS, "peak_rss_kib": peak_rss_kib(),
                               "vm_hwm_kib": rss_kib("VmHWM")}
    if pairs_path is not None:
        pq.write_table(pairs, pairs_path)
    return figures


# -- the parent --------------------------------------------------------------------------------
def spawn(arguments: list[str]) -> dict[str, Any]:
    """Run this script with ``arguments`` in a fresh interpreter and return the JSON it prints last."""
    done = subprocess.run([sys.executable, __file__, *arguments], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(arguments[:2])} failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def agreement(folder: Path, pairs: dict[str, Path], rows: int, check_rows: int, seed: int) -> dict[str, Any]:
    """Rosetta's matched text row vs each other engine's, per image row (all, or a seeded sample).

    A text row is *tied* when another text row has the same key and time: there the engines may
    legitimately differ (Rosetta takes the smallest id); everywhere else they must agree.
    """
    import numpy as np
    import pyarrow.parquet as pq

    text = pq.read_table(folder / "text.parquet")
    group = numbers(text.column("key")) * DAY_US + (numbers(text.column("time").cast("int64")) - ORIGIN_US)
    text_id = numbers(text.column("id"))
    del text
    _, inverse, counts = np.unique(group, return_inverse=True, return_counts=True)
    del group
    group_of = np.empty(rows, np.int64)
    group_of[text_id] = inverse
    ties_of = counts[group_of]  # text rows sharing each text row's key and time
    smallest = np.full(len(counts), np.iinfo(np.int64).max)
    np.minimum.at(smallest, inverse, text_id)
    del inverse, text_id
    rng = np.random.default_rng(seed + 1)
    sample = np.arange(rows) if not check_rows or check_rows >= rows else rng.choice(rows, check_rows, replace=False)

    def matched(path: Path) -> np.ndarray:
        """Text id matched to each image id (-1: none), in image id order."""
        table = pq.read_table(path)
        left, right = numbers(table.column("left_id")), numbers(table.column("right_id"))
        if len(left) != rows or np.bincount(left, minlength=rows).max() != 1:
            raise RuntimeError(f"{path.name}: {len(left)} rows, not exactly one per image row")
        out = np.empty(rows, np.int64)
        out[left] = right
        return out[sample]

    ours = matched(pairs["rosetta"])
    tied = (ours >= 0) & (ties_of[np.maximum(ours, 0)] > 1)
    result: dict[str, Any] = {
        "rows_checked": len(sample), "unmatched": int((ours < 0).sum()), "at_tie": int(tied.sum()),
        "rosetta_smallest_id_at_tie": int((ours[tied] == smallest[group_of[ours[tied]]]).sum()), "engines": {}}
    for name, path in pairs.items():
        if name == "rosetta":
            continue
        theirs = matched(path)
        same = ours == theirs
        same_tie = tied & (theirs >= 0) & (group_of[np.maximum(theirs, 0)] == group_of[np.maximum(ours, 0)])
        result["engines"][name] = {"agree": int((same & ~tied).sum()), "disagree": int((~same & ~tied).sum()),
                                   "tie_same_row": int((same & tied).sum()),
                                   "tie_other_row": int((~same & same_tie).sum()),
                                   "tie_wrong_time": int((tied & ~same_tie).sum())}
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000, help="image rows, and as many text rows")
    parser.add_argument("--keys", type=int, default=1_000, help="distinct by-keys")
    parser.add_argument("--key-type", choices=("str", "int"), default="str", help='"k0042" or 42')
    parser.add_argument("--id-type", choices=("str", "int"), default="str", help='"t000000042" or 42')
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--rounds", type=int, default=1, help="rounds (engine order reversed every other round)")
    parser.add_argument("--target", type=float, default=1.25, help="max rosetta join time / fastest engine's")
    parser.add_argument("--only", choices=ENGINES, action="append", help="benchmark only this engine (repeatable)")
    parser.add_argument("--check-rows", type=int, default=0, help="image rows to check for agreement (0: all)")
    parser.add_argument("--work-dir", type=Path, default=REPO / ".bench")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures as JSON here")
    parser.add_argument("--order", choices=("left", "rule"), default="left",
                        help="Rosetta's output order: the image table's (as polars/pandas) or the rule's (sorted)")
    # internal: this process only prepares the data, or runs one engine
    parser.add_argument("--prepare", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--engine", choices=ENGINES, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--pairs", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    folder = data_dir(args.work_dir, args.rows, args.keys, args.seed, args.key_type, args.id_type)

    if args.prepare:
        make_data(folder, args.rows, args.keys, args.seed, args.key_type, args.id_type)
        print(json.dumps({"data": str(folder)}))
        return 0
    if args.engine:
        print(json.dumps(run_engine(args.engine, args.data, args.pairs, args.order)))
        return 0

    engines = [e for e in ENGINES if e in set(args.only or ENGINES)]
    t0 = time.perf_counter()
    spawn(["--prepare", "--rows", str(args.rows), "--keys", str(args.keys), "--seed", str(args.seed),
           "--key-type", args.key_type, "--id-type", args.id_type, "--work-dir", str(args.work_dir)])
    size_mb = sum(p.stat().st_size for p in folder.glob("*.parquet")) / 2**20
    print(f"dataset: {args.rows:,} image + {args.rows:,} text rows, {args.keys:,} keys ({args.key_type}), ids "
          f"{args.id_type}, {size_mb:.0f} MB Parquet in {folder} ({time.perf_counter() - t0:.1f}s to prepare)",
          flush=True)

    runs: dict[str, list[dict[str, Any]]] = {e: [] for e in engines}
    pairs = {e: folder / f"pairs-{e}.parquet" for e in engines}
    for round_no in range(args.rounds):
        for name in engines if round_no % 2 == 0 else engines[::-1]:
            figures = spawn(["--engine", name, "--data", str(folder), "--order", args.order,
                             *(["--pairs", str(pairs[name])] if round_no == 0 else [])])
            if figures["rows_out"] != args.rows:
                raise RuntimeError(f"{name}: {figures['rows_out']} rows out, expected {args.rows} (one per image)")
            runs[name].append(figures)
            print(f"  {name} round {round_no + 1}: join {figures['join_s']:.2f}s, peak RSS "
                  f"{figures['peak_rss_kib'] / 1024:,.0f} MiB "
                  f"(before join {figures['rss_before_join_kib'] / 1024:,.0f})", flush=True)

    results: dict[str, Any] = {"rows": args.rows, "keys": args.keys, "key_type": args.key_type,
                               "id_type": args.id_type, "seed": args.seed, "rounds": args.rounds,
                               "cpus": os.cpu_count(), "target": args.target, "rosetta_order": args.order,
                               "engines": {}}
    for name, figs in runs.items():
        mean = sum(f["join_s"] for f in figs) / len(figs)
        results["engines"][name] = {
            "join_s": round(mean, 3), "join_s_rounds": [f["join_s"] for f in figs],
            "load_s": round(sum(f["load_s"] for f in figs) / len(figs), 3),
            "rss_before_join_mib": round(max(f["rss_before_join_kib"] for f in figs) / 1024),
            "peak_before_join_mib": round(max(f["peak_before_join_kib"] for f in figs) / 1024),
            "peak_rss_mib": round(max(f["peak_rss_kib"] for f in figs) / 1024),
            "vm_hwm_mib": round(max(f["vm_hwm_kib"] for f in figs) / 1024)}
    if "rosetta" in engines and len(engines) > 1:
        results["agreement"] = agreement(folder, pairs, args.rows, args.check_rows, args.seed)
    for path in pairs.values():
        path.unlink(missing_ok=True)

    print(json.dumps(results, indent=2))
    figures_by = results["engines"]
    fastest = min(f["join_s"] for f in figures_by.values())
    print(f"\n{'engine':<10}{'join s':>9}{'vs fastest':>12}{'peak RSS MiB':>14}{'before join':>13}"
          f"{'join +MiB':>11}")
    for name, fig in figures_by.items():
        grown = fig["peak_rss_mib"] - fig["rss_before_join_mib"]
        print(f"{name:<10}{fig['join_s']:>9.2f}{fig['join_s'] / fastest:>11.2f}x{fig['peak_rss_mib']:>14,}"
              f"{fig['rss_before_join_mib']:>13,}{grown:>11,}")
    ok = True
    if "rosetta" in figures_by and len(figures_by) > 1:
        ours = figures_by["rosetta"]
        others = {n: f for n, f in figures_by.items() if n != "rosetta"}
        time_ok = ours["join_s"] <= args.target * min(f["join_s"] for f in others.values())
        memory_ok = ours["peak_rss_mib"] <= min(f["peak_rss_mib"] for f in others.values())
        check = results["agreement"]
        agree_ok = all(e["disagree"] == 0 and e["tie_wrong_time"] == 0 for e in check["engines"].values()) and \
            check["rosetta_smallest_id_at_tie"] == check["at_tie"]
        print(f"\ntime: rosetta {ours['join_s']:.2f}s vs fastest other "
              f"{min(f['join_s'] for f in others.values()):.2f}s, target <= {args.target}x: "
              f"{'ok' if time_ok else 'MISSED'}")
        print(f"memory: rosetta peak {ours['peak_rss_mib']:,} MiB vs lowest other "
              f"{min(f['peak_rss_mib'] for f in others.values()):,} MiB: {'ok' if memory_ok else 'MISSED'}")
        print(f"agreement ({check['rows_checked']:,} image rows, {check['at_tie']:,} matched at a tie): "
              + ", ".join(f"{n} {e['agree']:,} agree / {e['disagree']:,} disagree"
                          for n, e in check["engines"].items())
              + f"; smallest id at ties {check['rosetta_smallest_id_at_tie']:,}/{check['at_tie']:,}: "
              + ("ok" if agree_ok else "MISMATCH"))
        ok = time_ok and memory_ok and agree_ok
    else:
        print("\nno target assessed: it needs rosetta and at least one other engine")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    if "rosetta" in figures_by and len(figures_by) > 1:
        print("targets met" if ok else "TARGETS MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
