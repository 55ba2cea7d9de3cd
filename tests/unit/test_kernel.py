from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from feature_store.ids import point_id
from feature_store.object_store.base import content_key
from rosetta.core.config import StrictModel, validate_config
from rosetta.core.errors import ConfigError
from rosetta.core.hashing import safe_name, sha256_bytes, sha256_stream, stable_uuid
from rosetta.core.timeutil import ensure_utc, isoformat_z


def test_content_key_fans_out_by_first_two_hex_digits() -> None:
    digest = sha256_bytes(b"hello")
    assert content_key(digest) == f"objects/sha256/{digest[:2]}/{digest[2:]}"
    with pytest.raises(ValueError):
        content_key("abc")


def test_sha256_stream_matches_bytes() -> None:
    data = b"x" * (3 * 1024 * 1024 + 7)
    assert sha256_stream(io.BytesIO(data)) == (sha256_bytes(data), len(data))


def test_point_ids_are_deterministic_and_distinct_per_part() -> None:
    a = point_id("src/a", "image", "enc@1")
    assert a == point_id("src/a", "image", "enc@1")
    assert uuid.UUID(a).version == 5
    assert len({a, point_id("src/a", "text", "enc@1"), point_id("src/a", "image", "enc@2"),
                point_id("src/b", "image", "enc@1")}) == 4


def test_stable_uuid_does_not_confuse_part_boundaries() -> None:
    assert stable_uuid("a", "bc") != stable_uuid("ab", "c")


def test_safe_name_is_unique_for_similar_run_ids() -> None:
    one, two = safe_name("manual__2026-01-01T00:00:00+00:00"), safe_name("manual__2026-01-01T00_00_00+00_00")
    assert one != two
    assert "/" not in one and ":" not in one


def test_ensure_utc_refuses_naive_and_converts_offsets() -> None:
    with pytest.raises(ValueError, match="no timezone"):
        ensure_utc(datetime(2026, 1, 1))
    berlin = datetime(2026, 1, 1, 12, tzinfo=timezone(timedelta(hours=1)))
    assert ensure_utc(berlin) == datetime(2026, 1, 1, 11, tzinfo=UTC)
    assert isoformat_z(berlin) == "2026-01-01T11:00:00.000000Z"


class _Example(StrictModel):
    name: str
    size: int = 1


def test_strict_config_rejects_unknown_keys_with_a_message_naming_the_source() -> None:
    with pytest.raises(ConfigError) as err:
        validate_config(_Example, {"name": "x", "sise": 2}, where="ROSETTA_EXAMPLE_*")
    assert "sise" in str(err.value) and "ROSETTA_EXAMPLE_*" in str(err.value)
    assert err.value.setting == "ROSETTA_EXAMPLE_*"


def test_ensure_utc_returns_plain_datetimes_for_subclasses() -> None:
    import pendulum

    value = ensure_utc(pendulum.datetime(2026, 1, 1, 12, tz="Europe/Berlin"))
    assert type(value) is datetime and value == datetime(2026, 1, 1, 11, tzinfo=UTC)
    assert value.isoformat() == "2026-01-01T11:00:00+00:00"
