"""DICOM benchmark: read + de-identify + write vs a plain pydicom dcmread + save_as loop, same run; and the
time until a 100-instance series sent by C-STORE is declared complete.

    .venv/bin/python benchmarks/bench_dicom.py                 # both parts
    .venv/bin/python benchmarks/bench_dicom.py --json figures.json

Part 1, throughput (instances/s, one thread each side, alternating rounds after a warm-up; medians over
rounds, and the ratio is the median of the per-round ratios):

- plain: ``pydicom.dcmread(path)`` then ``ds.save_as(out_path)`` for every file;
- Rosetta: the file's bytes through :class:`connectors.dicom_records.DicomRecords` (lenient read with the
  structural checks, event time, PS3.15 de-identification with modified dates, encode) and the
  de-identified bytes put into the content-addressed local object store, as ``store_batch`` does.
  Rendering PNGs for the encoders is not part of either side (``render=False``).

Two data sets: ``real-size``, the 68 images of ``pydicom-data`` (CT, MR, US, RG, SC, multi-frame;
native, RLE, JPEG, JPEG 2000; fetched from the local package index into .bench/ on first use, never from
the network); and ``bundled``, the readable instances of pydicom's own small test files.  The target
(0.6x of the plain loop) is checked on real-size data; the bundled figure shows the fixed per-instance
cost on tiny files.

Part 2, time to series complete: a DICOM C-STORE receiver (pynetdicom, as ``dicom_dimse`` spool mode
runs it) receives 100 CT instances of one series from a pynetdicom sender; the pipeline (plan, store,
commit, complete_series) runs every ``--poll`` seconds.  Measured from the first C-STORE to the run that
declares the series complete: (a) headers carry ImagesInAcquisition=100 (complete by count), (b) they
do not (complete after ``--quiet`` seconds without a new instance).

Exit code 0 only if part 1 meets ``--target`` on real-size data.
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
import zipfile
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("ROSETTA_DEID_KEY", "bench-" + uuid.uuid4().hex)  # a throw-away key for the run

PYDICOM_DATA = "pydicom-data==1.0.0"


def real_size_files(work: Path) -> list[Path]:
    """pydicom-data's images, unpacked under ``work`` from the wheel pip finds in the configured index."""
    target = work / "pydicom-data"
    if not (target / ".complete").exists():
        shutil.rmtree(target, ignore_errors=True)
        wheels = work / "wheels"
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(wheels), PYDICOM_DATA],
                       check=True)
        [wheel] = wheels.glob("pydicom_data-*.whl")
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(target)
        (target / ".complete").touch()
    return sorted(p for p in target.rglob("*.dcm") if p.is_file())


def bundled_files() -> list[Path]:
    from pydicom.data import get_testdata_files

    return sorted(Path(p) for p in get_testdata_files("*.dcm") if Path(p).is_file() and
                  "test_files" in Path(p).parts)


def usable(files: list[Path]) -> list[Path]:
    """The files both sides can process (the plain loop fails on broken ones; Rosetta quarantines them)."""
    import pydicom

    from connectors.dicom_records import DicomRecordConfig, DicomRecords

    records = DicomRecords(DicomRecordConfig(source="bench", render=False))
    keep = []
    for path in files:
        data = path.read_bytes()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                pydicom.dcmread(io.BytesIO(data)).save_as(io.BytesIO())
            records.records("bench", path.name, data, path.name)
        except Exception:  # BadRecordError or pydicom's own: either side refusing it leaves it out of both
            continue
        keep.append(path)
    return keep


def _run(work: Any, items: list[Any], threads: int) -> None:
    if threads == 1:
        for item in items:
            work(item)
    else:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(pool.map(work, items))


def plain_loop(files: list[Path], out: Path, threads: int) -> float:
    import pydicom

    start = time.perf_counter()
    _run(lambda pair: pydicom.dcmread(pair[1]).save_as(out / f"{pair[0]}.dcm"), list(enumerate(files)), threads)
    return time.perf_counter() - start


def rosetta_loop(files: list[Path], store_dir: Path, threads: int) -> float:
    from connectors.dicom_records import DicomRecordConfig, DicomRecords
    from feature_store.object_store import object_store_config_from_url, open_object_store

    records = DicomRecords(DicomRecordConfig(source="bench", render=False))
    store = open_object_store(object_store_config_from_url(str(store_dir)))

    def one(path: Path) -> None:
        for record in records.records("bench", path.name, path.read_bytes(), path.name):
            for obj in record.objects:
                store.put(obj.data, media_type=obj.media_type)

    start = time.perf_counter()
    _run(one, files, threads)
    elapsed = time.perf_counter() - start
    store.close()
    return elapsed


def throughput(name: str, files: list[Path], rounds: int, repeat: int, threads: int) -> dict[str, Any]:
    batch = files * repeat
    plain_times: list[float] = []
    rosetta_times: list[float] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for round_no in range(rounds + 1):  # round 0 warms the page cache and imports, untimed
            with tempfile.TemporaryDirectory(dir=REPO / ".bench") as tmp:
                out, store = Path(tmp), Path(tmp) / f"store-{round_no}"
                sides = [(plain_loop, out, plain_times), (rosetta_loop, store, rosetta_times)]
                for loop, target, times in sides if round_no % 2 == 0 else sides[::-1]:
                    elapsed = loop(batch, target, threads)
                    if round_no:
                        times.append(elapsed)
            if round_no:
                print(f"  {name} round {round_no}: plain {plain_times[-1]:.2f}s, rosetta {rosetta_times[-1]:.2f}s",
                      flush=True)
    # Each round times both sides back to back; this machine's speed drifts by tens of percent between
    # rounds (shared cores), so the figures are medians over rounds and the ratio is the median per-round one.
    plain_s, rosetta_s = statistics.median(plain_times), statistics.median(rosetta_times)
    ratio = statistics.median(p / r for p, r in zip(plain_times, rosetta_times, strict=True))
    size_mb = sum(p.stat().st_size for p in files) / len(files) / 1e6
    return {"files": len(files), "instances_per_round": len(batch), "threads": threads,
            "mean_file_mb": round(size_mb, 3),
            "plain_instances_per_s": round(len(batch) / plain_s, 1),
            "rosetta_instances_per_s": round(len(batch) / rosetta_s, 1), "ratio": round(ratio, 2),
            "plain_s": [round(t, 3) for t in plain_times], "rosetta_s": [round(t, 3) for t in rosetta_times]}


# -- part 2: time to series complete ----------------------------------------------------------------------
def series_instances(count: int, with_expected: bool) -> list[Any]:
    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.uid import generate_uid

    template = pydicom.dcmread(get_testdata_file("CT_small.dcm", download=False) or "")
    study, series = generate_uid(), generate_uid()
    out = []
    for number in range(1, count + 1):
        ds = copy.deepcopy(template)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.InstanceNumber = number
        if with_expected:
            ds.ImagesInAcquisition = count
        elif "ImagesInAcquisition" in ds:
            del ds.ImagesInAcquisition
        out.append(ds)
    return out


def time_to_complete(work: Path, count: int, with_expected: bool, quiet_s: float, poll_s: float) -> dict[str, Any]:
    from pynetdicom import AE

    from connectors.dicom_dimse import DicomStoreReceiver
    from feature_store.config import FeatureStoreConfig
    from feature_store.object_store import object_store_config_from_url
    from feature_store.vector_store import VectorStoreConfig
    from rosetta.pipelines.ingest import IngestPipeline, RunContext
    from rosetta.pipelines.settings import IngestSettings

    root = work / f"series-{uuid.uuid4().hex[:8]}"
    spool = root / "spool"
    settings = IngestSettings(
        connector="dicom_dimse", options={"source": "bench_series", "mode": "spool", "spool_dir": str(spool),
                                          "render": False, "series_quiet_period_s": quiet_s},
        feature_store=FeatureStoreConfig(object_store=object_store_config_from_url(str(root / "store")),
                                         vector_store=VectorStoreConfig(path=root / "qdrant", collection="b")),
        batch_size=64, concurrency=4)
    instances = series_instances(count, with_expected)
    receiver = DicomStoreReceiver(spool, ae_title="ROSETTA", port=0).start()
    sender = AE(ae_title="BENCH")
    sender.add_requested_context(instances[0].SOPClassUID, instances[0].file_meta.TransferSyntaxUID)
    runs = 0
    try:
        started = time.perf_counter()
        assoc = sender.associate("127.0.0.1", receiver.port, ae_title="ROSETTA")
        assert assoc.is_established
        for ds in instances:
            status = assoc.send_c_store(ds)
            assert status and status.Status == 0x0000
        assoc.release()
        sent = time.perf_counter() - started
        while True:
            runs += 1
            run = RunContext(run_id=f"run-{runs}", ingest_time=datetime.now(UTC))
            with IngestPipeline(settings) as pipeline:
                batches = pipeline.plan(run)
                stored = [pipeline.store_batch(run, b) for b in batches]
                pipeline.commit(run, stored, {}, plans=batches)
                done = pipeline.complete_series(run)["series"]
            if done:
                break
            time.sleep(poll_s)
        elapsed = time.perf_counter() - started
    finally:
        receiver.stop()
    return {"instances": count, "expected_in_headers": with_expected, "quiet_period_s": quiet_s,
            "poll_s": poll_s, "send_s": round(sent, 2), "time_to_complete_s": round(elapsed, 2),
            "pipeline_runs": runs, "reason": done[0]["reason"], "instances_in_series": done[0]["instances"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3, help="times each file is processed per round")
    parser.add_argument("--target", type=float, default=0.6)
    parser.add_argument("--threads", type=int, default=1, help="worker threads, both sides")
    parser.add_argument("--quiet", type=float, default=5.0, help="series quiet period for part 2, seconds")
    parser.add_argument("--poll", type=float, default=1.0, help="seconds between pipeline runs in part 2")
    parser.add_argument("--skip-series", action="store_true")
    parser.add_argument("--work-dir", type=Path, default=REPO / ".bench")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    args.work_dir.mkdir(parents=True, exist_ok=True)

    results: dict[str, Any] = {"target": args.target, "throughput": {}, "series": []}
    for name, files in (("real-size", real_size_files(args.work_dir)), ("bundled", bundled_files())):
        chosen = usable(files)
        print(f"{name}: {len(chosen)} of {len(files)} files usable by both sides", flush=True)
        results["throughput"][name] = throughput(name, chosen, args.rounds, args.repeat, args.threads)
    if not args.skip_series:
        for with_expected in (True, False):
            figure = time_to_complete(args.work_dir, 100, with_expected, args.quiet, args.poll)
            print(f"  series of 100 by C-STORE, expected count in headers={with_expected}: complete after "
                  f"{figure['time_to_complete_s']}s ({figure['reason']}, {figure['pipeline_runs']} pipeline runs)",
                  flush=True)
            results["series"].append(figure)
    print(json.dumps(results, indent=2))
    print(f"\n{'data':<12}{'plain inst/s':>14}{'rosetta inst/s':>16}{'ratio':>8}  target >= {args.target}x "
          "(real-size)")
    for name, fig in results["throughput"].items():
        print(f"{name:<12}{fig['plain_instances_per_s']:>14,.1f}{fig['rosetta_instances_per_s']:>16,.1f}"
              f"{fig['ratio']:>7.2f}x")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    ok = results["throughput"]["real-size"]["ratio"] >= args.target
    print("target met" if ok else "TARGET MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
