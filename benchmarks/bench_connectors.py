"""Connector benchmark: listing + fetch throughput of three connectors vs the plain library loop, same run.

    .venv/bin/python benchmarks/bench_connectors.py            # 10,000 samples
    .venv/bin/python benchmarks/bench_connectors.py --objects 2000 --json figures.json

1. Generates N small samples (a 2-8 KB JPEG crop of one of scikit-image's real photos and a
   one-line ``.txt`` caption each), cached under .bench/connectors: a folder of ten
   sub-folders, and the same samples as ten WebDataset tar shards.
2. Starts a throw-away SeaweedFS (weed mini) on free loopback ports and uploads the samples
   to a fresh bucket (not timed).
3. For each connector, times what the pipeline does with it (``list_items(State(), Window())``
   then ``fetch()`` of every item: records are built, images and captions checked) against
   the plain library loop doing the same reads without any checks:

   - image_folder: recursive ``os.scandir`` walk, pairing files by stem, reading both files;
   - s3_prefix: boto3 ``list_objects_v2`` paging, then ``get_object`` of every object;
   - webdataset: ``tarfile`` iteration of every shard, reading every member's bytes.

   Local files are read by one thread on both sides (the work is CPU bound, threads would only
   add GIL contention); S3 fetches run on ``--concurrency`` threads on both sides, as the
   pipeline's ``store_batch`` does.
4. ``--rounds`` alternating rounds (the order of the two sides flips each round) and the
   means are compared, so drift on a shared machine hits both sides alike.

Exit code 0 only if every connector reaches ``--target`` (0.7x) of its plain loop.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import shutil
import sys
import tarfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SHARDS = 10
SUBFOLDERS = 10
CACHE_VERSION = "v1"
MTIME = 1_780_000_000  # fixed member/file time (2026-05-28 UTC), so cached data is byte-identical

Timed = tuple[float, int, int]  # seconds, samples, bytes


# -- the data ------------------------------------------------------------------------------------
def make_samples(work: Path, count: int) -> tuple[Path, Path]:
    """``count`` small JPEG + caption samples as a folder and as tar shards (cached by count).

    Returns (folder root, shard folder).  The folder holds ``part-NN/<name>.jpg`` and
    ``.txt``; shard ``shard-NNNNN.tar`` holds the same files of ``part-NN`` as members
    ``<name>.jpg`` and ``<name>.txt``.
    """
    from PIL import Image

    from rosetta.samples import captions, skimage_data_dir

    base = work / "connectors"
    folder, shards = base / "folder", base / "shards"
    marker = base / f".complete-{count}-{CACHE_VERSION}"
    if marker.exists():
        return folder, shards
    shutil.rmtree(base, ignore_errors=True)
    folder.mkdir(parents=True)
    shards.mkdir()
    photos = []
    for name, caption in captions().items():
        image = Image.open(skimage_data_dir() / name).convert("RGB")
        if min(image.size) >= 200:
            photos.append((Path(name).stem, image, caption))
    rng = random.Random(42)
    per_part = -(-count // SUBFOLDERS)
    for i in range(count):
        stem, image, caption = photos[i % len(photos)]
        w, h = image.size
        cw, ch = int(w * rng.uniform(0.3, 0.9)), int(h * rng.uniform(0.3, 0.9))
        left, top = rng.randint(0, w - cw), rng.randint(0, h - ch)
        side = rng.choice((96, 112, 128, 144, 160))
        crop = image.crop((left, top, left + cw, top + ch)).resize((side, side * 3 // 4))
        data = b""
        for quality in (90, 85, 80, 75, 70, 60, 50):
            buffer = io.BytesIO()
            crop.save(buffer, "JPEG", quality=quality)
            data = buffer.getvalue()
            if len(data) <= 8 * 1024:
                break
        part = folder / f"part-{i // per_part:02d}"
        part.mkdir(exist_ok=True)
        (part / f"{stem}-{i:05d}.jpg").write_bytes(data)
        (part / f"{stem}-{i:05d}.txt").write_text(f"{caption} (crop {i} at {left},{top})\n", encoding="utf-8")
    for index, part in enumerate(sorted(p for p in folder.iterdir() if p.is_dir())):
        with tarfile.open(shards / f"shard-{index:05d}.tar", "w", format=tarfile.USTAR_FORMAT) as tar:
            for path in sorted(part.iterdir()):
                info = tarfile.TarInfo(path.name)
                data = path.read_bytes()
                info.size, info.mtime, info.mode = len(data), MTIME, 0o644
                tar.addfile(info, io.BytesIO(data))
    for path in folder.rglob("*"):
        if path.is_file():
            os.utime(path, (MTIME, MTIME))
    marker.touch()
    return folder, shards


def upload(folder: Path, client: Any, bucket: str, concurrency: int) -> int:
    """Put every file of ``folder`` under ``bucket`` with its relative path as key; returns the count."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    client.create_bucket(Bucket=bucket)

    def put(path: Path) -> None:
        client.put_object(Bucket=bucket, Key=path.relative_to(folder).as_posix(), Body=path.read_bytes())

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(put, files))
    return len(files)


def s3_client(endpoint: str, access: str, secret: str, pool: int) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=access,
        aws_secret_access_key=secret,
        config=Config(max_pool_connections=pool, s3={"addressing_style": "path"},
                      request_checksum_calculation="when_required", response_checksum_validation="when_required"))


# -- the plain library loops -----------------------------------------------------------------------
def plain_folder(root: Path) -> Timed:
    """os.scandir walk, files paired by stem (as the connector groups them), both files of each read."""
    start = time.perf_counter()
    groups: dict[str, list[str]] = {}
    stack = [str(root)]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                else:
                    groups.setdefault(os.path.splitext(entry.path)[0], []).append(entry.path)
    total = 0
    for stem in sorted(groups):
        for path in groups[stem]:
            with open(path, "rb") as handle:
                total += len(handle.read())
    return time.perf_counter() - start, len(groups), total


def plain_s3(endpoint: str, access: str, secret: str, bucket: str, concurrency: int) -> Timed:
    """boto3 list_objects_v2 paging, then get_object of every object on ``concurrency`` threads."""
    start = time.perf_counter()
    client = s3_client(endpoint, access, secret, max(10, concurrency))
    keys: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, PaginationConfig={"PageSize": 1000}):
        keys.extend(obj["Key"] for obj in page.get("Contents", ()))

    def get(key: str) -> int:
        with client.get_object(Bucket=bucket, Key=key)["Body"] as body:
            return len(body.read())

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        total = sum(pool.map(get, keys))
    elapsed = time.perf_counter() - start
    client.close()
    return elapsed, len({os.path.splitext(k)[0] for k in keys}), total


def plain_webdataset(shards: Path) -> Timed:
    """tarfile iteration of every shard, extracting every member's bytes."""
    start = time.perf_counter()
    keys: set[tuple[str, str]] = set()
    total = 0
    for shard in sorted(shards.glob("*.tar")):
        with tarfile.open(shard, mode="r:") as tar:
            for member in tar:
                if not member.isreg():
                    continue
                handle = tar.extractfile(member)
                assert handle is not None
                total += len(handle.read())
                keys.add((shard.name, member.name.split(".", 1)[0]))
    return time.perf_counter() - start, len(keys), total


# -- the connectors --------------------------------------------------------------------------------
def run_connector(connector: Any, concurrency: int = 1) -> Timed:
    """``list_items(State(), Window())`` + ``fetch()`` of every item, as the pipeline's plan and store do."""
    from connectors.sdk.base import State, Window

    start = time.perf_counter()
    with connector:
        items = list(connector.list_items(State(), Window()))

        def fetch(item: Any) -> int:
            return sum(len(o.data) for record in connector.fetch(item) for o in record.objects)

        if concurrency > 1:
            with ThreadPoolExecutor(max_workers=concurrency) as pool:
                total = sum(pool.map(fetch, items))
        else:
            total = sum(fetch(item) for item in items)
        elapsed = time.perf_counter() - start
    return elapsed, len(items), total


def folder_connector(root: Path) -> Any:
    from connectors.image_folder import ImageFolderConfig, ImageFolderConnector

    return ImageFolderConnector(ImageFolderConfig(root=root, source="bench"))


def s3_connector(endpoint: str, access: str, secret: str, bucket: str) -> Any:
    from pydantic import SecretStr

    from connectors.s3_prefix import S3PrefixConfig, S3PrefixConnector

    return S3PrefixConnector(S3PrefixConfig(bucket=bucket, endpoint_url=endpoint, aws_access_key_id=access,
                                            aws_secret_access_key=SecretStr(secret), source="bench"))


def webdataset_connector(shards: Path) -> Any:
    from connectors.webdataset import WebDatasetConfig, WebDatasetConnector

    return WebDatasetConnector(WebDatasetConfig(root=shards, source="bench"))


def compare(name: str, plain: Callable[[], Timed], connector: Callable[[], Timed], rounds: int,
            expected: int, *, warm_up: bool = False) -> dict[str, Any]:
    """Alternate the two sides ``rounds`` times (order flipped each round) and compare the mean times.

    ``warm_up`` runs the plain loop once, untimed, first, so that neither side is timed reading a
    cold page cache (local files only; otherwise whichever side runs first pays for the disk).
    """
    plain_times: list[float] = []
    connector_times: list[float] = []
    if warm_up:
        plain()
    for round_no in range(rounds):
        sides = [("plain", plain, plain_times), ("connector", connector, connector_times)]
        for side, fn, times in sides if round_no % 2 == 0 else sides[::-1]:
            elapsed, samples, _ = fn()
            if samples != expected:
                raise RuntimeError(f"{name} {side}: {samples} samples, expected {expected}")
            times.append(elapsed)
        print(f"  {name} round {round_no + 1}: plain {plain_times[-1]:.2f}s, connector {connector_times[-1]:.2f}s",
              flush=True)
    plain_s = sum(plain_times) / len(plain_times)
    connector_s = sum(connector_times) / len(connector_times)
    return {"plain_s": [round(t, 3) for t in plain_times], "connector_s": [round(t, 3) for t in connector_times],
            "plain_samples_per_s": round(expected / plain_s, 1),
            "connector_samples_per_s": round(expected / connector_s, 1),
            "ratio": round(plain_s / connector_s, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=10_000, help="samples (each a JPEG and a .txt caption)")
    parser.add_argument("--concurrency", type=int, default=8, help="S3 fetch threads, both sides")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of plain loop and connector")
    parser.add_argument("--target", type=float, default=0.7, help="minimum connector/plain throughput ratio")
    parser.add_argument("--only", choices=("image_folder", "s3_prefix", "webdataset"), action="append",
                        help="benchmark only this connector (repeatable)")
    parser.add_argument("--work-dir", type=Path, default=REPO / ".bench")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures as JSON here")
    args = parser.parse_args()
    only = set(args.only or ("image_folder", "s3_prefix", "webdataset"))

    from PIL import Image

    from rosetta.devservices.seaweedfs import SeaweedFS

    Image.preinit()  # load the common plugins before any timing, as Image.open does on its first call
    t0 = time.perf_counter()
    folder, shards = make_samples(args.work_dir, args.objects)
    images = sorted(folder.rglob("*.jpg"))
    mean_kb = sum(p.stat().st_size for p in images) / len(images) / 1024
    print(f"dataset: {len(images)} samples (JPEG mean {mean_kb:.1f} KB + .txt caption) in {folder}, "
          f"{len(list(shards.glob('*.tar')))} shards in {shards} ({time.perf_counter() - t0:.1f}s to prepare)",
          flush=True)
    n = len(images)
    results: dict[str, Any] = {"samples": n, "objects": 2 * n, "mean_image_kb": round(mean_kb, 1),
                               "rounds": args.rounds, "s3_concurrency": args.concurrency, "local_threads": 1,
                               "target": args.target, "connectors": {}}
    figures: dict[str, dict[str, Any]] = results["connectors"]

    if "image_folder" in only:
        figures["image_folder"] = compare("image_folder", lambda: plain_folder(folder),
                                          lambda: run_connector(folder_connector(folder)), args.rounds, n,
                                          warm_up=True)
    if "webdataset" in only:
        figures["webdataset"] = compare("webdataset", lambda: plain_webdataset(shards),
                                        lambda: run_connector(webdataset_connector(shards)), args.rounds, n,
                                        warm_up=True)
    if "s3_prefix" in only:
        data_dir = args.work_dir / f"seaweedfs-connectors-{uuid.uuid4().hex[:8]}"
        try:
            with SeaweedFS(data_dir) as s3:
                endpoint, access, secret = s3.endpoint_url, s3.access_key, s3.secret_key
                bucket = f"bench-connectors-{uuid.uuid4().hex[:6]}"
                t0 = time.perf_counter()
                client = s3_client(endpoint, access, secret, 32)
                uploaded = upload(folder, client, bucket, 16)
                client.close()
                print(f"uploaded {uploaded} objects to s3://{bucket} in {time.perf_counter() - t0:.1f}s", flush=True)
                figures["s3_prefix"] = compare(
                    "s3_prefix", lambda: plain_s3(endpoint, access, secret, bucket, args.concurrency),
                    lambda: run_connector(s3_connector(endpoint, access, secret, bucket), args.concurrency),
                    args.rounds, n)
        finally:
            shutil.rmtree(data_dir, ignore_errors=True)

    print(json.dumps(results, indent=2))
    print(f"\n{'connector':<14}{'plain samples/s':>17}{'connector samples/s':>21}{'ratio':>8}  "
          f"target >= {args.target}x")
    ok = True
    for name, fig in figures.items():
        met = fig["ratio"] >= args.target
        ok &= met
        print(f"{name:<14}{fig['plain_samples_per_s']:>17,.0f}{fig['connector_samples_per_s']:>21,.0f}"
              f"{fig['ratio']:>7.2f}x  {'ok' if met else 'MISSED'}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    print("targets met" if ok else "TARGETS MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
