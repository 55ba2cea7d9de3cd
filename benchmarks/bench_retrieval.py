"""Historical retrieval benchmark: Rosetta's point-in-time join vs Feast's local ("file") offline store, same data.

    .venv/bin/python benchmarks/bench_retrieval.py                 # the shape of Feast issue #3003 (below)
    .venv/bin/python benchmarks/bench_retrieval.py --json figures.json --rounds 3
    .venv/bin/python benchmarks/bench_retrieval.py --entities 1700 --rows 20000 --entity-count 2000 --views 2

The shape of feast-dev/feast#3003 ("get_historical_features is super slow and memory inefficient"): 17,000
entity rows; 10 feature views of 100 float32 features each; 200,000 value rows per view over 20,000 entities
(string key ``driver_id``); all 1,000 features retrieved at once.  Two semantics, both measured on both engines:

- ``event``: the value with the latest event time at or before the entity row's ``event_timestamp`` (Feast's
  default): Rosetta ``get_historical_features(..., bitemporal=False)``, Feast
  ``store.get_historical_features(entity_df, features).to_df()``;
- ``bitemporal``: a value is visible only if its event time *and* its created (ingest) time are at or before the
  entity row's timestamp; among those, the latest event time: Rosetta ``bitemporal=True``, Feast
  ``get_historical_features(..., filter_by_created_timestamp=True)`` (feast-dev/feast#6617; the "file"
  offline store is Feast's Dask one, which supports the flag: values created later are masked before the dedup).

1. The data is generated once with numpy (``--seed``) and cached under .bench/retrieval/<shape>: the values in
   Rosetta's offline layout (``OfflineStore.write``: ``store/offline/<view>/<version>/date=YYYY-MM-DD/
   part-bench.parquet``, columns ``driver_id``, ``event_time``, ``ingest_time``, the features), and
   ``entities.parquet`` (``driver_id``, ``event_timestamp``).  Event times are spread over 30 days, unique
   within a view (no ties, where the engines' tie rules could differ); each created time is its event time plus
   0..2 hours; 1% of feature values are null.  Entity timestamps are unique, from day 15 to one day past the data.
   Feast's ``FileSource`` of each view points at the same Hive-partitioned directory (Dask reads it as is and
   drops the extra ``date`` column), so both engines read exactly the same Parquet files.
2. Each (engine, mode) runs in its own fresh subprocess; Feast in its own virtualenv (``--feast-venv``, created
   with ``pip install feast==0.67.0`` when missing: its pins clash with the project's).  The subprocess builds
   its store (Feast: ``RepoConfig`` with provider ``local``, offline store ``file``, a registry file and a
   SQLite online store under the cache folder; ``Entity``, one ``FileSource`` and ``FeatureView`` per view,
   ttl 3650 days so that TTL plays no part; ``apply``), loads the entity rows (not timed), then times only the
   retrieval call -- reading the Parquet files is part of it on both sides -- and prints, as JSON on stdout, its
   wall time, RSS before it and the process's peak RSS (``ru_maxrss``).  Feast's Dask uses every core (its
   default); Rosetta's numpy/Arrow engine mostly one.
3. ``--rounds`` rounds, the engine order reversed every other round; times are averaged, peaks the highest.
4. The parent checks, per mode, every value of every feature of every entity row (rows matched on
   (``driver_id``, ``event_timestamp``), null and NaN counting as equal): Rosetta vs Feast, and each engine vs a
   reference computed independently with a plain pandas join (every stored row of the key, filtered by the mode's
   rule, latest event time kept).  It also counts the values that differ between Rosetta's two modes (the
   bitemporal filter must change some answers).  Feast departs from the reference in two known ways, reported
   apart: its Dask store drops an entity row when some view has rows for its key but none visible at its
   timestamp (instead of nulls); and with ``filter_by_created_timestamp`` it blanks the too-new candidates and
   relies on ``sort_values(na_position="first")`` to put the blanks first before ``drop_duplicates(keep="last")``,
   which Dask does not do across partitions: some rows get nulls where an older visible value exists.

Exit code 0 only if, in each mode, Rosetta equals the reference in every value, is at least ``--target`` (5x)
faster than Feast, its peak RSS is no higher than Feast's, and every value where it differs from Feast is one
where Feast differs from the reference.  With ``--only``, only the reference check applies.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from schemas.features import FeatureView

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

ENGINES = ("rosetta", "feast")
MODES = ("event", "bitemporal")
FEAST_VERSION = "0.67.0"
CACHE_VERSION = "v1"
DAY_US = 86_400_000_000
ORIGIN_US = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z in microseconds
SPAN_DAYS = 30  # event times over 30 days
ENTITY_FROM_DAY = 15  # entity timestamps from day 15 to one day past the data
MAX_DELAY_US = 2 * 3_600_000_000  # created = event + 0..2 hours
NULL_FRACTION = 0.01
RUN_ID = "bench"


# -- the data ------------------------------------------------------------------------------------
def data_dir(work: Path, args: argparse.Namespace) -> Path:
    return work / "retrieval" / (f"e{args.entities}-v{args.views}-f{args.features}-r{args.rows}-"
                                 f"k{args.entity_count}-s{args.seed}-{CACHE_VERSION}")


def make_view(index: int, features: int) -> FeatureView:
    """Rosetta's definition of view ``fv<index>``: ``features`` float32 features ``f<index>_<i>``, no ttl."""
    from schemas.features import FeatureView

    return FeatureView.model_validate({
        "name": f"fv{index}", "entities": ["driver"], "kind": "metadata", "source": "bench",
        "features": [{"name": f"f{index}_{i}", "dtype": "float32"} for i in range(features)]})


def unique_times(rng: np.random.Generator, n: int, low: int, span: int) -> np.ndarray:
    """``n`` distinct microsecond offsets in [low, low + span), in random order."""
    import numpy as np

    step = span // n
    if step < 1:
        raise ValueError(f"{n:,} distinct times do not fit in {span:,} microseconds")
    return low + rng.permutation(np.arange(n, dtype=np.int64) * step + rng.integers(0, step, n))


def make_data(folder: Path, args: argparse.Namespace) -> Path:
    """The values in Rosetta's offline layout plus ``entities.parquet`` (see the module docstring), cached."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    from feature_store.offline import OfflineStore

    marker = folder / ".complete"
    if marker.exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    rng = np.random.default_rng(args.seed)
    width = len(str(args.entity_count - 1))
    names = pa.array([f"d{k:0{width}d}" for k in range(args.entity_count)], pa.string())
    ts = pa.timestamp("us", tz="UTC")
    offline = OfflineStore(pafs.LocalFileSystem(), str(folder / "store"))
    meta: dict[str, Any] = {"views": {}}
    for index in range(args.views):
        view = make_view(index, args.features)
        driver = pc.take(names, pa.array(rng.integers(0, args.entity_count, args.rows), pa.int64()))
        event = ORIGIN_US + unique_times(rng, args.rows, 0, SPAN_DAYS * DAY_US)
        ingest = event + rng.integers(0, MAX_DELAY_US + 1, args.rows)
        columns: dict[str, Any] = {"driver_id": driver, "event_time": pa.array(event, pa.int64()).cast(ts),
                                   "ingest_time": pa.array(ingest, pa.int64()).cast(ts)}
        for feature in view.features:
            values = rng.standard_normal(args.rows, dtype=np.float32)
            columns[feature.name] = pa.array(values, pa.float32(), mask=rng.random(args.rows) < NULL_FRACTION)
        offline.write(view, ["driver_id"], pa.table(columns), RUN_ID)
        meta["views"][view.name] = {"path": offline.path(view), "features": [f.name for f in view.features]}
        del columns
    driver = pc.take(names, pa.array(rng.integers(0, args.entity_count, args.entities), pa.int64()))
    start = ENTITY_FROM_DAY * DAY_US
    moment = ORIGIN_US + unique_times(rng, args.entities, start, (SPAN_DAYS + 1) * DAY_US - start)
    pq.write_table(pa.table({"driver_id": driver, "event_timestamp": pa.array(moment, pa.int64()).cast(ts)}),
                   folder / "entities.parquet")
    (folder / "meta.json").write_text(json.dumps(meta, indent=1))
    marker.touch()
    return folder


# -- one engine, one mode, in its own process ----------------------------------------------------
def rss_kib(field: str = "VmRSS") -> int:
    """This process's resident set size now (``VmHWM``: its peak since exec), KiB (Linux)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    return 0


def peak_rss_kib() -> int:
    """Peak RSS, KiB on Linux (it starts at the parent's peak: hence a parent that stays small)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


_MARKS: dict[str, int] = {}


def _before_call() -> float:
    """Collect garbage, note the RSS and the peak so far, and return the start time of the retrieval."""
    gc.collect()
    _MARKS["rss_before_kib"] = rss_kib()
    _MARKS["peak_before_kib"] = peak_rss_kib()
    return time.perf_counter()


def retrieve_rosetta(folder: Path, mode: str) -> tuple[float, pa.Table]:
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    from feature_store.offline import OfflineStore
    from feature_store.retrieval import get_historical_features
    from schemas.features import Entity

    meta = json.loads((folder / "meta.json").read_text())
    offline = OfflineStore(pafs.LocalFileSystem(), str(folder / "store"))
    views = [make_view(int(name[2:]), len(spec["features"])) for name, spec in meta["views"].items()]
    for view in views:
        if offline.path(view) != meta["views"][view.name]["path"]:
            raise RuntimeError(f"view {view.name}: its version is not the cached data's; delete {folder}")
    entity = Entity(name="driver", join_keys=("driver_id",))
    entity_rows = pq.read_table(folder / "entities.parquet")
    start = _before_call()
    out = get_historical_features(offline, views, {"driver": entity}, entity_rows, bitemporal=mode == "bitemporal")
    elapsed = time.perf_counter() - start
    return elapsed, out


def retrieve_feast(folder: Path, mode: str) -> tuple[float, pa.Table]:
    from datetime import timedelta

    import pyarrow as pa
    import pyarrow.parquet as pq
    from feast import Entity, FeatureStore, FeatureView, Field, FileSource, RepoConfig, ValueType
    from feast.types import Float32, String

    meta = json.loads((folder / "meta.json").read_text())
    repo = folder / "feast"
    shutil.rmtree(repo, ignore_errors=True)  # a fresh registry every run
    repo.mkdir()
    config = RepoConfig(project="bench", provider="local", registry=str(repo / "registry.db"),
                        offline_store={"type": "file"},
                        online_store={"type": "sqlite", "path": str(repo / "online.db")},
                        repo_path=repo, entity_key_serialization_version=3)
    store = FeatureStore(config=config)
    driver = Entity(name="driver", join_keys=["driver_id"], value_type=ValueType.STRING)
    views, refs = [], []
    for name, spec in meta["views"].items():
        source = FileSource(name=f"{name}_source", path=spec["path"], timestamp_field="event_time",
                            created_timestamp_column="ingest_time")
        schema = [Field(name="driver_id", dtype=String), *(Field(name=f, dtype=Float32) for f in spec["features"])]
        views.append(FeatureView(name=name, entities=[driver], ttl=timedelta(days=3650), schema=schema,
                                 source=source, online=False))
        refs += [f"{name}:{feature}" for feature in spec["features"]]
    store.apply([driver, *views])
    entity_df = pq.read_table(folder / "entities.parquet").to_pandas()
    entity_df["event_timestamp"] = entity_df["event_timestamp"].astype("datetime64[ns, UTC]")
    extra = {"filter_by_created_timestamp": True} if mode == "bitemporal" else {}
    start = _before_call()
    df = store.get_historical_features(entity_df=entity_df, features=refs, **extra).to_df()
    elapsed = time.perf_counter() - start
    features = [f for spec in meta["views"].values() for f in spec["features"]]
    out = pa.Table.from_pandas(df[["driver_id", "event_timestamp", *features]], preserve_index=False)
    return elapsed, out


def run_engine(name: str, mode: str, folder: Path, out_path: Path | None) -> dict[str, Any]:
    """Load, retrieve (timed), measure; optionally write the result (after measuring)."""
    import pyarrow.parquet as pq

    start = time.perf_counter()
    seconds, out = retrieve_rosetta(folder, mode) if name == "rosetta" else retrieve_feast(folder, mode)
    figures: dict[str, Any] = {"engine": name, "mode": mode, "seconds": round(seconds, 3),
                               "setup_s": round(time.perf_counter() - start - seconds, 3),
                               "rows_out": out.num_rows, "columns_out": out.num_columns, **_MARKS,
                               "peak_rss_kib": peak_rss_kib(), "vm_hwm_kib": rss_kib("VmHWM")}
    if out_path is not None:
        pq.write_table(out, out_path)
    return figures


# -- the parent --------------------------------------------------------------------------------
def feast_python(venv: Path) -> Path:
    """The virtualenv's interpreter, with feast==FEAST_VERSION installed there first when it is not."""
    python = venv / "bin" / "python"
    probe = f"import feast, sys; sys.exit(feast.__version__ != {FEAST_VERSION!r})"
    if python.exists() and subprocess.run([python, "-c", probe], capture_output=True, check=False).returncode == 0:
        return python
    print(f"creating {venv} with feast=={FEAST_VERSION} (once)", flush=True)
    base = shutil.which("python3.11") or sys.executable
    subprocess.run([base, "-m", "venv", str(venv)], check=True)
    subprocess.run([python, "-m", "pip", "install", "--quiet", f"feast=={FEAST_VERSION}", "pandas", "pyarrow"],
                   check=True)
    subprocess.run([python, "-c", probe], check=True)
    return python


def spawn(python: Path | str, arguments: list[str]) -> dict[str, Any]:
    """Run this script with ``arguments`` in a fresh interpreter and return the JSON it prints last."""
    done = subprocess.run([str(python), __file__, *arguments], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(arguments[:4])} failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def _float_columns(table: pa.Table, names: list[str]) -> list[np.ndarray]:
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    out = []
    for name in names:
        column = table.column(name).cast(pa.float64())
        out.append(np.asarray(pc.fill_null(column, float("nan")).to_numpy(), dtype=np.float64))
    return out


def load_result(path: Path) -> pa.Table:
    """A retrieval result, sorted by (driver_id, event_timestamp), timestamps in microseconds."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    index = table.schema.get_field_index("event_timestamp")
    table = table.set_column(index, "event_timestamp", table.column(index).cast(pa.timestamp("us", "UTC")))
    return table.sort_by([("driver_id", "ascending"), ("event_timestamp", "ascending")])


def _keys(table: pa.Table) -> list[tuple[str, int]]:
    import pyarrow as pa

    return list(zip(table.column("driver_id").to_pylist(),
                    table.column("event_timestamp").cast(pa.int64()).to_pylist(), strict=True))


def compare(ours: pa.Table, theirs: pa.Table, views: dict[str, list[str]]) -> dict[str, Any]:
    """Every value of every feature, row by row (rows matched on key and timestamp); null == NaN == null.

    Entity rows missing from the other result are counted apart, with how many of them have, in ours, a whole
    view unanswered (no value visible at the row's timestamp): Feast's Dask store drops an entity row when a view
    has rows for its key but none at or before its timestamp (its event-time filter removes every candidate
    instead of leaving a null), so those rows, and only rows of that kind, may be missing from Feast's result.
    """
    import numpy as np
    import pyarrow as pa

    features = [f for names in views.values() for f in names]
    result: dict[str, Any] = {"rows": ours.num_rows, "rows_other": theirs.num_rows, "rows_compared": 0,
                              "rows_missing_in_other": 0, "missing_with_a_view_unanswered": 0,
                              "rows_extra_in_other": 0, "rows_with_a_view_unanswered": 0, "values": 0,
                              "mismatches": 0, "rows_with_mismatch": 0, "only_ours_null": 0, "only_other_null": 0,
                              "null_values": 0, "examples": []}
    theirs_keys, ours_keys = set(_keys(theirs)), _keys(ours)
    result["rows_extra_in_other"] = len(theirs_keys - set(ours_keys))
    present = np.fromiter((k in theirs_keys for k in ours_keys), dtype=bool, count=len(ours_keys))
    unanswered = np.zeros(ours.num_rows, dtype=bool)
    for names in views.values():
        unanswered |= np.logical_and.reduce([ours.column(n).is_null().to_numpy(zero_copy_only=False) for n in names])
    result["rows_with_a_view_unanswered"] = int(unanswered.sum())
    result["rows_missing_in_other"] = int((~present).sum())
    result["missing_with_a_view_unanswered"] = int((~present & unanswered).sum())
    if result["rows_extra_in_other"]:
        result["error"] = f"{result['rows_extra_in_other']} entity rows in the other result are not in ours"
        return result
    ours = ours.filter(pa.array(present))
    result["rows_compared"] = ours.num_rows
    if not ours.select(["driver_id", "event_timestamp"]).equals(theirs.select(["driver_id", "event_timestamp"])):
        result["error"] = "the rows compared do not line up"
        return result
    bad_rows = np.zeros(ours.num_rows, dtype=bool)
    for first in range(0, len(features), 100):
        names = features[first:first + 100]
        for name, a, b in zip(names, _float_columns(ours, names), _float_columns(theirs, names), strict=True):
            same = (a == b) | (np.isnan(a) & np.isnan(b))
            result["values"] += len(a)
            result["null_values"] += int(np.isnan(a).sum())
            if not same.all():
                wrong = np.flatnonzero(~same)
                result["mismatches"] += len(wrong)
                result["only_ours_null"] += int(np.isnan(a[wrong]).sum())
                result["only_other_null"] += int(np.isnan(b[wrong]).sum())
                bad_rows[wrong] = True
                for row in wrong[:max(0, 3 - len(result["examples"]))]:
                    result["examples"].append({"driver_id": ours.column("driver_id")[row].as_py(),
                                               "event_timestamp": str(ours.column("event_timestamp")[row].as_py()),
                                               "feature": name, "ours": float(a[row]), "other": float(b[row])})
    result["rows_with_mismatch"] = int(bad_rows.sum())
    return result


def exact(check: dict[str, Any]) -> bool:
    """The same rows and every value equal."""
    return "error" not in check and check["mismatches"] == 0 and check["rows_missing_in_other"] == 0


def reference(folder: Path, views: dict[str, list[str]], bitemporal: bool) -> pa.Table:
    """The expected result, computed independently of both engines with a plain pandas join: per entity row and
    view, every stored row of its key, kept if ``event_time <= ts`` (and ``ingest_time <= ts``: bitemporal),
    the latest event time wins (event times are unique within a view); none: nulls."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    meta = json.loads((folder / "meta.json").read_text())
    entities = pq.read_table(folder / "entities.parquet")
    queries = pd.DataFrame({"driver_id": entities.column("driver_id").to_numpy(zero_copy_only=False),
                            "ts": entities.column("event_timestamp").cast(pa.int64()).to_numpy(),
                            "query": np.arange(entities.num_rows)})
    out = entities
    for view, names in views.items():
        stored = ds.dataset(meta["views"][view]["path"], format="parquet", partitioning="hive").to_table(
            columns=["driver_id", "event_time", "ingest_time", *names])
        rows = pd.DataFrame({"driver_id": stored.column("driver_id").to_numpy(zero_copy_only=False),
                             "event": stored.column("event_time").cast(pa.int64()).to_numpy(),
                             "ingest": stored.column("ingest_time").cast(pa.int64()).to_numpy(),
                             "row": np.arange(stored.num_rows)})
        pairs = queries.merge(rows, on="driver_id")
        visible = pairs["event"] <= pairs["ts"]
        if bitemporal:
            visible &= pairs["ingest"] <= pairs["ts"]
        best = pairs[visible].sort_values("event", kind="stable").drop_duplicates("query", keep="last")
        chosen = np.full(entities.num_rows, -1, dtype=np.int64)
        chosen[best["query"].to_numpy()] = best["row"].to_numpy()
        take = pa.array(chosen, pa.int64(), mask=chosen < 0)
        for name in names:
            out = out.append_column(name, stored.column(name).take(take))
    index = out.schema.get_field_index("event_timestamp")
    out = out.set_column(index, "event_timestamp", out.column(index).cast(pa.timestamp("us", "UTC")))
    return out.sort_by([("driver_id", "ascending"), ("event_timestamp", "ascending")])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entities", type=int, default=17_000, help="entity rows (the entity_df)")
    parser.add_argument("--views", type=int, default=10, help="feature views")
    parser.add_argument("--features", type=int, default=100, help="float32 features per view")
    parser.add_argument("--rows", type=int, default=200_000, help="value rows per view")
    parser.add_argument("--entity-count", type=int, default=20_000, help="distinct driver_id values")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--rounds", type=int, default=1, help="rounds (engine order reversed every other round)")
    parser.add_argument("--target", type=float, default=5.0, help="min Feast time / Rosetta time, per mode")
    parser.add_argument("--only", choices=ENGINES, action="append", help="benchmark only this engine")
    parser.add_argument("--mode", choices=MODES, action="append", help="only this mode (repeatable; default both)")
    parser.add_argument("--work-dir", type=Path, default=REPO / ".bench")
    parser.add_argument("--feast-venv", type=Path, default=REPO / ".bench" / "feast-venv")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures as JSON here")
    # internal: this process only prepares the data, or runs one engine in one mode
    parser.add_argument("--prepare", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--engine", choices=ENGINES, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.work_dir = args.work_dir.resolve()
    folder = data_dir(args.work_dir, args)

    if args.prepare:
        make_data(folder, args)
        print(json.dumps({"data": str(folder)}))
        return 0
    if args.engine:
        print(json.dumps(run_engine(args.engine, args.mode[0], args.data.resolve(), args.out)))
        return 0

    engines = [e for e in ENGINES if e in set(args.only or ENGINES)]
    modes = [m for m in MODES if m in set(args.mode or MODES)]
    pythons: dict[str, Path | str] = {"rosetta": sys.executable}
    if "feast" in engines:
        pythons["feast"] = feast_python(args.feast_venv)
    shape = ["--entities", str(args.entities), "--views", str(args.views), "--features", str(args.features),
             "--rows", str(args.rows), "--entity-count", str(args.entity_count), "--seed", str(args.seed)]
    t0 = time.perf_counter()
    spawn(sys.executable, ["--prepare", *shape, "--work-dir", str(args.work_dir)])
    size_mb = sum(p.stat().st_size for p in folder.rglob("*.parquet")) / 2**20
    print(f"dataset: {args.entities:,} entity rows; {args.views} views x {args.features} float32 features, "
          f"{args.rows:,} rows each over {args.entity_count:,} entities; {size_mb:,.0f} MB Parquet in {folder} "
          f"({time.perf_counter() - t0:.1f}s to prepare)", flush=True)

    runs: dict[tuple[str, str], list[dict[str, Any]]] = {(e, m): [] for m in modes for e in engines}
    outputs = {(e, m): folder / f"out-{e}-{m}.parquet" for e, m in runs}
    for round_no in range(args.rounds):
        order = list(runs) if round_no % 2 == 0 else list(runs)[::-1]
        for engine, mode in order:
            figures = spawn(pythons[engine], ["--engine", engine, "--mode", mode, "--data", str(folder), *shape,
                                              *(["--out", str(outputs[engine, mode])] if round_no == 0 else [])])
            if engine == "rosetta" and figures["rows_out"] != args.entities:
                raise RuntimeError(f"{engine} {mode}: {figures['rows_out']} rows out, expected {args.entities}")
            runs[engine, mode].append(figures)
            print(f"  {engine:<8} {mode:<11} round {round_no + 1}: {figures['seconds']:.2f}s, peak RSS "
                  f"{figures['peak_rss_kib'] / 1024:,.0f} MiB (before the call "
                  f"{figures['rss_before_kib'] / 1024:,.0f})", flush=True)

    results: dict[str, Any] = {"entities": args.entities, "views": args.views, "features": args.features,
                               "rows": args.rows, "entity_count": args.entity_count, "seed": args.seed,
                               "rounds": args.rounds, "cpus": os.cpu_count(), "target": args.target,
                               "feast_version": FEAST_VERSION, "runs": {}}
    for (engine, mode), figs in runs.items():
        results["runs"][f"{engine}/{mode}"] = {
            "engine": engine, "mode": mode, "seconds": round(sum(f["seconds"] for f in figs) / len(figs), 3),
            "seconds_rounds": [f["seconds"] for f in figs],
            "setup_s": round(sum(f["setup_s"] for f in figs) / len(figs), 3),
            "rss_before_mib": round(max(f["rss_before_kib"] for f in figs) / 1024),
            "peak_rss_mib": round(max(f["peak_rss_kib"] for f in figs) / 1024),
            "vm_hwm_mib": round(max(f["vm_hwm_kib"] for f in figs) / 1024)}
    both = len(engines) == 2
    views = {f"fv{v}": [f"f{v}_{i}" for i in range(args.features)] for v in range(args.views)}
    results["agreement"], results["reference"] = {}, {}
    for mode in modes:  # every value of every row: engine vs engine, and each engine vs an independent reference
        expected = reference(folder, views, bitemporal=mode == "bitemporal")
        got = {engine: load_result(outputs[engine, mode]) for engine in engines}
        results["reference"][mode] = {engine: compare(expected, got[engine], views) for engine in engines}
        if both:
            results["agreement"][mode] = compare(got["rosetta"], got["feast"], views)
        del expected, got
    if "rosetta" in engines and len(modes) == 2:
        modes_differ = compare(load_result(outputs["rosetta", "event"]), load_result(outputs["rosetta", "bitemporal"]),
                               views)
        results["rosetta_event_vs_bitemporal"] = {k: modes_differ[k] for k in ("values", "mismatches",
                                                                                "rows_with_mismatch")}
    for path in outputs.values():
        path.unlink(missing_ok=True)

    print(json.dumps(results, indent=2))
    figures_by = results["runs"]
    print(f"\n{'engine':<10}{'mode':<12}{'seconds':>9}{'peak RSS MiB':>14}{'before call':>13}{'speed-up':>10}")
    for fig in figures_by.values():
        feast = figures_by.get(f"feast/{fig['mode']}")
        speed = f"{feast['seconds'] / fig['seconds']:.1f}x" if feast and fig["engine"] == "rosetta" else ""
        print(f"{fig['engine']:<10}{fig['mode']:<12}{fig['seconds']:>9.2f}{fig['peak_rss_mib']:>14,}"
              f"{fig['rss_before_mib']:>13,}{speed:>10}")
    ok = True
    for mode in modes:
        print()
        for engine in engines:
            ref = results["reference"][mode][engine]
            print(f"{mode}: {engine} vs the reference: {ref['values']:,} values in {ref['rows_compared']:,} rows "
                  f"({ref['null_values']:,} null): {ref['mismatches']:,} differ in {ref['rows_with_mismatch']:,} rows "
                  f"({ref['only_other_null']:,} null where a value was visible, {ref['only_ours_null']:,} a value "
                  f"where none was); entity rows missing: {ref['rows_missing_in_other']:,} (all with a view that has "
                  f"no visible value: {ref['rows_missing_in_other'] == ref['missing_with_a_view_unanswered']}; "
                  f"{ref['rows_with_a_view_unanswered']:,} such rows in all)"
                  + (f" ({ref['error']})" if "error" in ref else "")
                  + (f"; e.g. {ref['examples'][0]}" if ref["examples"] else ""))
        if "rosetta" in engines:
            ok = ok and exact(results["reference"][mode]["rosetta"])
        if not both:
            continue
        ours, theirs = figures_by[f"rosetta/{mode}"], figures_by[f"feast/{mode}"]
        check, feast_ref = results["agreement"][mode], results["reference"][mode]["feast"]
        speed = theirs["seconds"] / ours["seconds"]
        time_ok, memory_ok = speed >= args.target, ours["peak_rss_mib"] <= theirs["peak_rss_mib"]
        # identical wherever Feast gives the answer its documented semantics call for (it is the reference's)
        agree_ok = ("error" not in check and exact(results["reference"][mode]["rosetta"])
                    and check["mismatches"] == feast_ref["mismatches"]
                    and check["rows_missing_in_other"] == check["missing_with_a_view_unanswered"])
        print(f"{mode}: rosetta vs feast: {check['values']:,} values compared ({check['rows_compared']:,} rows x "
              f"{args.views * args.features:,} features), {check['mismatches']:,} differ in "
              f"{check['rows_with_mismatch']:,} rows, every one where Feast departs from the reference: "
              f"{'ok' if agree_ok else 'MISMATCH'}")
        print(f"{mode}: time {ours['seconds']:.2f}s vs Feast {theirs['seconds']:.2f}s = {speed:.1f}x, target >= "
              f"{args.target}x: {'ok' if time_ok else 'MISSED'}; peak RSS {ours['peak_rss_mib']:,} vs "
              f"{theirs['peak_rss_mib']:,} MiB: {'ok' if memory_ok else 'MISSED'}")
        ok = ok and time_ok and memory_ok and agree_ok
    if not both:
        print("\nno speed or memory target assessed: it needs both engines")
    if "rosetta_event_vs_bitemporal" in results:
        diff = results["rosetta_event_vs_bitemporal"]
        print(f"rosetta event vs bitemporal: {diff['mismatches']:,} values differ in {diff['rows_with_mismatch']:,} "
              "rows (values created after the entity timestamp, hidden by the bitemporal filter)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    print("targets met" if ok else "TARGETS MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
