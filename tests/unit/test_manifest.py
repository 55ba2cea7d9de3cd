from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from feature_store.manifest import Manifest, QuarantineLedger
from feature_store.object_store import object_store_config_from_url, open_object_store
from schemas.records import ManifestEntry, QuarantineEntry

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _entry(source_id: str, role: str, sha: str, run: str, ingest: datetime = T0) -> ManifestEntry:
    return ManifestEntry(sample_id=f"src/{source_id}", source="src", source_id=source_id, role=role,
                         key=f"objects/sha256/{sha[:2]}/{sha[2:]}", uri=f"file:///x/{sha}", sha256=sha,
                         size_bytes=3, media_type="image/png", event_time=T0 - timedelta(days=1),
                         ingest_time=ingest, run_id=run)


def test_commit_read_and_known_versions(tmp_path: Path) -> None:
    manifest = Manifest(open_object_store(object_store_config_from_url(str(tmp_path))))
    assert manifest.read().num_rows == 0
    assert manifest.commit("src", "run-1", [_entry("a", "image", "1" * 64, "run-1"),
                                     _entry("a", "caption", "2" * 64, "run-1")]) == 2
    table = manifest.read()
    assert table.num_rows == 2
    assert table.schema.field("event_time").type.tz == "UTC"
    assert table.column("ingest_time").to_pylist() == [T0, T0]
    assert manifest.known_versions("src") == {("a", "image", "1" * 64), ("a", "caption", "2" * 64)}
    assert manifest.known_versions("other") == set()
    assert manifest.known_versions("src", exclude_run_id="run-1") == set()


def test_recommitting_a_run_replaces_its_part(tmp_path: Path) -> None:
    manifest = Manifest(open_object_store(object_store_config_from_url(str(tmp_path))))
    rows = [_entry("a", "image", "1" * 64, "run-1")]
    manifest.commit("src", "run-1", rows)
    manifest.commit("src", "run-1", rows)
    assert manifest.read().num_rows == 1


def test_duplicate_rows_from_two_runs_keep_the_earliest_ingest(tmp_path: Path) -> None:
    manifest = Manifest(open_object_store(object_store_config_from_url(str(tmp_path))))
    later = T0 + timedelta(hours=1)
    manifest.commit("src", "run-2", [_entry("a", "image", "1" * 64, "run-2", later)])
    manifest.commit("src", "run-1", [_entry("a", "image", "1" * 64, "run-1", T0),
                                     _entry("b", "image", "3" * 64, "run-1")])
    table = manifest.read()
    assert table.column("sample_id").to_pylist() == ["src/a", "src/b"]
    assert table.column("run_id").to_pylist() == ["run-1", "run-1"]


def test_changed_object_is_a_new_version_row(tmp_path: Path) -> None:
    manifest = Manifest(open_object_store(object_store_config_from_url(str(tmp_path))))
    manifest.commit("src", "run-1", [_entry("a", "image", "1" * 64, "run-1")])
    manifest.commit("src", "run-2", [_entry("a", "image", "4" * 64, "run-2", T0 + timedelta(days=1))])
    assert manifest.read().column("sha256").to_pylist() == ["1" * 64, "4" * 64]


def test_quarantine_ledger_round_trip(tmp_path: Path) -> None:
    ledger = QuarantineLedger(open_object_store(object_store_config_from_url(str(tmp_path))))
    entry = QuarantineEntry(source="src", source_id="bad", reason="a.jpg: cannot decode image", stage="store",
                            uri=None, sha256=None, size_bytes=None, ingest_time=T0, run_id="run-1")
    assert ledger.commit("src", "run-1", [entry]) == 1
    assert ledger.read().to_pylist()[0]["reason"] == "a.jpg: cannot decode image"
    assert ledger.commit("src", "run-1", []) == 0
    assert ledger.read().num_rows == 0


def test_state_lives_in_the_manifest_part_and_the_latest_run_wins(tmp_path: Path) -> None:
    manifest = Manifest(open_object_store(object_store_config_from_url(str(tmp_path))))
    assert manifest.latest_state("src") is None
    manifest.commit("src", "run-1", [_entry("a", "image", "1" * 64, "run-1")], state={"cursor": 10},
                    ingest_time=T0)
    manifest.commit("src", "run-2", [], state={"cursor": 20}, ingest_time=T0 + timedelta(hours=1))
    manifest.commit("other", "run-3", [], state={"cursor": 99}, ingest_time=T0 + timedelta(hours=2))
    assert manifest.latest_state("src") == {"cursor": 20}
    assert manifest.latest_state("src", exclude_run_id="run-2") == {"cursor": 10}
    assert manifest.read(source="src").num_rows == 1
    assert manifest.commit("src", "run-4", []) == 0  # no rows, no state: nothing written
    assert not any("run-4" in k for k in manifest.store.list("manifest/"))
