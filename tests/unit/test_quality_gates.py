"""The aligned-pairs gate with Great Expectations: passes good pairs, blocks or warns on bad ones."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest

from transforms.alignment import AlignSpec, align
from transforms.quality.gates import QualityGateError, aligned_pairs_gate

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TS = pa.timestamp("us", tz="UTC")


def _pairs(offsets_s: list[float]) -> pa.Table:
    left = pa.table({"source_id": [f"L{i}" for i in range(len(offsets_s))],
                     "event_time": pa.array([T0 + timedelta(seconds=10 * i) for i in range(len(offsets_s))], TS)})
    right = pa.table({"source_id": [f"R{i}" for i in range(len(offsets_s))],
                      "event_time": pa.array([T0 + timedelta(seconds=10 * i + o) for i, o in enumerate(offsets_s)],
                                             TS)})
    return align(left, right, AlignSpec(strategy="nearest", cardinality="one_to_one"))


def test_good_pairs_pass_and_the_validation_result_is_kept() -> None:
    result = aligned_pairs_gate(_pairs([0.0, 0.5, -1.0, 1.5]), tolerance=timedelta(seconds=2),
                                max_abs_offset=timedelta(seconds=4))
    assert result.success and result.rows == 4 and all(o.success for o in result.outcomes)
    assert json.loads(result.validation_json)["success"] is True
    assert [o.expectation for o in result.outcomes][:2] == ["expect_column_values_to_not_be_null"] * 2


def test_too_few_pairs_within_tolerance_block_or_warn_by_policy() -> None:
    pairs = _pairs([0.0, 3.5, -3.9, 3.0])  # 1 of 4 within 2 s
    with pytest.raises(QualityGateError, match=r"aligned_pairs.*abs_offset_s"):
        aligned_pairs_gate(pairs, tolerance=timedelta(seconds=2), min_share_within_tolerance=0.75)
    warned = aligned_pairs_gate(pairs, tolerance=timedelta(seconds=2), min_share_within_tolerance=0.75,
                                policy="warn")
    assert not warned.success and warned.summary()["failed"] == ["expect_column_values_to_be_between(abs_offset_s)"]
    assert aligned_pairs_gate(pairs, tolerance=timedelta(seconds=2), min_share_within_tolerance=0.2).success


def test_the_raw_manifest_gate_checks_content_addresses_and_sizes() -> None:
    from transforms.quality.gates import manifest_gate

    sha, other = "ab" * 32, "cd" * 32
    key = f"objects/sha256/ab/{sha[2:]}"
    good = pa.table({"source_id": ["a", "b"], "key": [key, key], "uri": [f"s3://b/{key}"] * 2,
                     "sha256": [sha, sha], "size_bytes": [10, 1]})
    assert manifest_gate(good).success
    bad = pa.table({"source_id": ["a", "b"], "key": [key, key], "uri": [f"s3://b/{key}"] * 2,
                    "sha256": ["not-a-sha", other], "size_bytes": [10, 0]})
    with pytest.raises(QualityGateError, match="raw_manifest"):
        manifest_gate(bad)
    result = manifest_gate(bad, policy="warn")
    assert not result.success and set(result.summary()["failed"]) == {
        "expect_column_values_to_match_regex(sha256)", "expect_column_values_to_be_in_set(addressed)",
        "expect_column_values_to_be_between(size_bytes)"}


def test_the_dicom_metadata_gate_wants_uids_modality_and_frames() -> None:
    from transforms.quality.gates import dicom_metadata_gate

    def record(keys: dict[str, str], **metadata: object) -> dict[str, str]:
        return {"source_id": "x", "keys": json.dumps(keys), "metadata": json.dumps(metadata)}

    uids = {"study_uid": "2.25.1", "series_uid": "2.25.2", "sop_uid": "2.25.3"}
    good = pa.Table.from_pylist([record(uids, modality="CT", sop_class_uid="1.2.840.10008.5.1.4.1.1.2", frames=1)])
    assert dicom_metadata_gate(good).success
    bad = pa.Table.from_pylist([record({"study_uid": "2.25.1"}, modality="", sop_class_uid="1.2.x", frames=0)])
    result = dicom_metadata_gate(bad, policy="warn")
    assert not result.success and set(result.summary()["failed"]) == {
        "expect_column_values_to_not_be_null(series_uid)", "expect_column_values_to_not_be_null(sop_uid)",
        "expect_column_values_to_not_be_null(modality)", "expect_column_values_to_match_regex(sop_class_uid)",
        "expect_column_values_to_be_between(frames)"}
    with pytest.raises(QualityGateError, match="dicom_metadata"):
        dicom_metadata_gate(bad)


def test_a_gate_renders_a_readable_report() -> None:
    from transforms.quality.gates import manifest_gate

    bad = pa.table({"source_id": ["a"], "key": ["objects/x"], "uri": ["s3://b/objects/x"], "sha256": ["nope"],
                    "size_bytes": [0]})
    page = manifest_gate(bad, policy="warn").html("cams <1>: raw_manifest")
    assert "<h1>cams &lt;1&gt;: raw_manifest</h1>" in page and "FAILED (policy warn)" in page
    assert page.count("<tr class=bad>") == 3 and page.count("<tr class=ok>") == 2
