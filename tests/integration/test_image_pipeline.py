"""The ingestion steps end to end on real parts: SeaweedFS S3, Qdrant's engine (local mode),
real encoders and real photos.  The DAG test runs the same steps through Airflow."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from feature_store import FeatureStore
from feature_store.config import FeatureStoreConfig
from feature_store.object_store import object_store_config_from_url
from feature_store.vector_store import VectorStoreConfig
from rosetta.pipelines.ingest import IngestPipeline, RunContext
from rosetta.pipelines.settings import IngestSettings

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _settings(folder: Path, tmp_path: Path, s3_options: dict[str, Any], bucket: str) -> IngestSettings:
    return IngestSettings(
        connector="image_folder", options={"root": str(folder), "source": "photos"},
        feature_store=FeatureStoreConfig(
            object_store=object_store_config_from_url(f"s3://{bucket}/rosetta", **s3_options),
            vector_store=VectorStoreConfig(path=tmp_path / "qdrant", collection="samples")),
        batch_size=2, concurrency=4)


def _run(settings: IngestSettings, run_id: str, *, stop_before_commit: bool = False, retry_failed: bool = False,
         day: int = 1) -> dict[str, Any]:
    run = RunContext(run_id=run_id, ingest_time=datetime(2026, 12, day, tzinfo=UTC), retry_failed=retry_failed)
    with IngestPipeline(settings) as pipeline:
        pipeline.check()
        batches = pipeline.plan(run)
        stored = [pipeline.store_batch(run, b) for b in batches]
        embedded = [pipeline.embed_batch(run, s) for s in stored]
        vectors = pipeline.write_vectors(run, embedded)
        if stop_before_commit:
            return vectors
        return pipeline.commit(run, stored, vectors, plans=batches)


def test_first_run_stores_everything_second_run_nothing(small_photo_dir: Path, tmp_path: Path,
                                                        s3_options: dict[str, Any], bucket_name: str) -> None:
    settings = _settings(small_photo_dir, tmp_path, s3_options, bucket_name)
    first = _run(settings, "run-1")
    assert (first["items"], first["new_records"], first["quarantined"]) == (4, 4, 0)
    assert first["objects_written"] == 8 and first["manifest_rows"] == 8
    assert first["bytes_written"] == sum(p.stat().st_size for p in small_photo_dir.iterdir())
    assert (first["points_written"], first["points_added"], first["points_total"]) == (8, 8, 8)

    second = _run(settings, "run-2")  # the state says nothing changed: nothing is even listed
    assert (second["items"], second["new_records"], second["objects_written"]) == (0, 0, 0)
    assert (second["points_written"], second["points_added"], second["points_total"]) == (0, 0, 8)
    assert second["manifest_rows"] == 0

    with FeatureStore(settings.feature_store) as fs:
        manifest = fs.manifest.read()
        assert manifest.num_rows == 8
        for row in manifest.to_pylist():  # every manifest row points at the real bytes
            data = fs.objects.read_bytes(row["key"])
            assert len(data) == row["size_bytes"]
            assert row["source"] == "photos" and row["event_time"].tzinfo is not None
        features = fs.get_online_features(["photos/chelsea", "photos/unknown"])
        chelsea = features["photos/chelsea"]
        assert features["photos/unknown"] is None
        assert chelsea is not None
        assert (len(chelsea.vectors["image"]), len(chelsea.vectors["text"])) == (1280, 384)
        assert chelsea.encoders["text"]["name"] == "all-MiniLM-L6-v2"
        assert fs.objects.read_bytes(fs.objects.key_for(chelsea.payload["image_uri"])) == \
            (small_photo_dir / "chelsea.png").read_bytes()
        assert "cat" in chelsea.payload["text"]
        hits = fs.search(chelsea.vectors["image"], modality="image", limit=1)
        assert hits[0].sample_id == "photos/chelsea" and hits[0].score == pytest.approx(1.0, abs=1e-4)


def test_bad_inputs_are_quarantined_with_bytes_kept_and_the_run_goes_on(
        small_photo_dir: Path, tmp_path: Path, s3_options: dict[str, Any], bucket_name: str) -> None:
    (small_photo_dir / "broken.jpg").write_bytes((small_photo_dir / "rocket.jpg").read_bytes()[:2000])
    (small_photo_dir / "broken.txt").write_text("a rocket, cut short")
    (small_photo_dir / "silent.png").write_bytes((small_photo_dir / "coffee.png").read_bytes())
    (small_photo_dir / "silent.txt").write_text("   ")
    (small_photo_dir / "notes.docx").write_bytes(b"PK\x03\x04 not a picture")
    garbled = _png_with_garbled_pixels((small_photo_dir / "coffee.png").read_bytes())
    (small_photo_dir / "garbled.png").write_bytes(garbled)  # checksums fine, pixels undecodable
    (small_photo_dir / "garbled.txt").write_text("coffee, garbled")
    settings = _settings(small_photo_dir, tmp_path, s3_options, bucket_name)
    summary = _run(settings, "run-bad")
    assert (summary["new_records"], summary["quarantined"]) == (5, 4)
    assert summary["points_total"] == 8  # the four good samples, image + text
    reasons = {q["source_id"]: q["reason"] for q in summary["quarantine_reasons"]}
    assert "cannot decode image" in reasons["broken"]
    assert "empty caption" in reasons["silent"]
    assert "unknown file type '.docx'" in reasons["notes.docx"]
    assert "image encoder cannot decode" in reasons["garbled"]
    with FeatureStore(settings.feature_store) as fs:
        ledger = fs.quarantine.read().to_pylist()
        assert {r["source_id"]: r["stage"] for r in ledger} == {
            "broken": "store", "silent": "store", "notes.docx": "store", "garbled": "embed"}
        kept = {r["source_id"]: fs.objects.read_bytes(fs.objects.key_for(r["uri"])) for r in ledger}
        assert fs.get_online_features(["photos/garbled"])["photos/garbled"] is None
    assert kept["notes.docx"] == b"PK\x03\x04 not a picture"
    assert kept["broken"] == (small_photo_dir / "broken.jpg").read_bytes()
    assert kept["garbled"] == garbled
    assert kept["silent"] == (small_photo_dir / "silent.png").read_bytes()


def test_retry_failed_redoes_only_the_failed_items_after_a_fix(small_photo_dir: Path, tmp_path: Path,
                                                               s3_options: dict[str, Any], bucket_name: str) -> None:
    good_jpeg, good_png = (small_photo_dir / "rocket.jpg").read_bytes(), (small_photo_dir / "coffee.png").read_bytes()
    (small_photo_dir / "broken.jpg").write_bytes(good_jpeg[:2000])  # fails at the store stage
    (small_photo_dir / "garbled.png").write_bytes(_png_with_garbled_pixels(good_png))  # fails at the embed stage
    (small_photo_dir / "broken.txt").write_text("a rocket")
    (small_photo_dir / "garbled.txt").write_text("a coffee")
    settings = _settings(small_photo_dir, tmp_path, s3_options, bucket_name)
    first = _run(settings, "run-1")
    assert (first["new_records"], first["quarantined"]) == (5, 2)
    with IngestPipeline(settings) as pipeline:
        assert set(pipeline.failed_items()) == {"broken", "garbled"}

    # fixed at the source without a new modification time: an incremental run does not see it ...
    for name, data in (("broken.jpg", good_jpeg), ("garbled.png", good_png)):
        mtime = (small_photo_dir / name).stat().st_mtime_ns
        (small_photo_dir / name).write_bytes(data)
        os.utime(small_photo_dir / name, ns=(mtime, mtime))
    assert _run(settings, "run-2", day=2)["items"] == 0
    # ... a retry of the failed items does, and only them; the incremental state does not move
    retry = _run(settings, "run-3", retry_failed=True, day=3)
    assert (retry["retry_failed"], retry["items"], retry["new_records"], retry["quarantined"]) == (True, 2, 2, 0)
    assert retry["state"] is None and retry["points_added"] == 4  # image + caption of both
    with IngestPipeline(settings) as pipeline:
        assert pipeline.failed_items() == {}
    assert _run(settings, "run-4", retry_failed=True, day=4)["items"] == 0
    with FeatureStore(settings.feature_store) as fs:
        found = fs.get_online_features(["photos/broken", "photos/garbled"])
        assert all(f is not None and "image" in f.vectors for f in found.values())


def _png_with_garbled_pixels(data: bytes) -> bytes:
    """Scramble the first IDAT chunk and fix its CRC: the file verifies, the pixels do not decode."""
    import struct
    import zlib

    out, pos = bytearray(data), 8
    while pos < len(out):
        length = struct.unpack(">I", out[pos:pos + 4])[0]
        kind = bytes(out[pos + 4:pos + 8])
        if kind == b"IDAT":
            body = bytes(b ^ 0x5A for b in out[pos + 8:pos + 8 + length])
            out[pos + 8:pos + 8 + length] = body
            out[pos + 8 + length:pos + 12 + length] = struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
            return bytes(out)
        pos += 12 + length
    raise AssertionError("no IDAT chunk")


def test_crash_before_commit_then_rerun_gives_no_gaps_and_no_duplicates(
        small_photo_dir: Path, tmp_path: Path, s3_options: dict[str, Any], bucket_name: str) -> None:
    settings = _settings(small_photo_dir, tmp_path, s3_options, bucket_name)
    crashed = _run(settings, "run-crash", stop_before_commit=True)
    assert crashed["points_total"] == 8
    retried = _run(settings, "run-retry")  # a new run: neither manifest nor state saw the crashed one
    assert (retried["items"], retried["new_records"], retried["objects_written"]) == (4, 4, 0)
    assert (retried["points_added"], retried["points_total"]) == (0, 8)
    again = _run(settings, "run-retry")  # re-running the same run rebuilds the same part
    assert again["manifest_rows"] == 8
    with FeatureStore(settings.feature_store) as fs:
        assert fs.manifest.read().num_rows == 8


def test_changed_caption_makes_a_new_version(small_photo_dir: Path, tmp_path: Path,
                                             s3_options: dict[str, Any], bucket_name: str) -> None:
    settings = _settings(small_photo_dir, tmp_path, s3_options, bucket_name)
    _run(settings, "run-1")
    (small_photo_dir / "chelsea.txt").write_text("A sleepy tabby cat.")
    (small_photo_dir / "rocket.jpg").touch()  # touched, not changed: listed, then skipped by its hash
    later = (small_photo_dir / "rocket.jpg").stat().st_mtime_ns + 10**9
    for name in ("chelsea.txt", "rocket.jpg"):
        os.utime(small_photo_dir / name, ns=(later, later))
    second = _run(settings, "run-2")
    assert (second["items"], second["new_records"], second["unchanged_records"]) == (2, 1, 1)
    assert second["objects_written"] == 1 and second["points_added"] == 0  # same points, new vectors
    with FeatureStore(settings.feature_store) as fs:
        assert fs.get_online_features(["photos/chelsea"])["photos/chelsea"].payload["text"] == \
            "A sleepy tabby cat."  # type: ignore[union-attr]
        assert fs.manifest.read().num_rows == 9


def test_local_object_store_has_the_same_layout(small_photo_dir: Path, tmp_path: Path) -> None:
    settings = IngestSettings(
        connector="image_folder", options={"root": str(small_photo_dir), "source": "photos"},
        feature_store=FeatureStoreConfig(object_store=object_store_config_from_url(str(tmp_path / "store")),
                                         vector_store=VectorStoreConfig(path=tmp_path / "qdrant")))
    summary = _run(settings, "run-local")
    assert summary["objects_written"] == 8
    keys = sorted(p.relative_to(tmp_path / "store").as_posix() for p in (tmp_path / "store" / "objects").rglob("*")
                  if p.is_file())
    assert len(keys) == 8 and all(k.startswith("objects/sha256/") and len(k.split("/")[3]) == 62 for k in keys)
