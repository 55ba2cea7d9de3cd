"""Time helpers.  Every time in Rosetta is a tz-aware ``datetime`` in UTC."""

from __future__ import annotations

from datetime import UTC, datetime


def ensure_utc(value: datetime, *, name: str = "time") -> datetime:
    """Return ``value`` converted to UTC; refuse naive datetimes.

    A naive datetime has no defined instant, so guessing would silently shift
    data: the caller must attach the source's timezone first.
    """
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} {value.isoformat()} has no timezone; attach the source's timezone first")
    utc = value.astimezone(UTC)
    if type(utc) is not datetime:  # e.g. pendulum from Airflow: keep records plain stdlib datetimes
        utc = datetime(utc.year, utc.month, utc.day, utc.hour, utc.minute, utc.second, utc.microsecond, tzinfo=UTC)
    return utc


def from_timestamp(seconds: float) -> datetime:
    """A POSIX timestamp (seconds since the epoch) as a UTC datetime."""
    return datetime.fromtimestamp(seconds, tz=UTC)


def isoformat_z(value: datetime) -> str:
    """ISO 8601 in UTC with a ``Z`` suffix, e.g. ``2026-12-04T21:00:00.000000Z``."""
    return ensure_utc(value).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
