"""Time helpers.  Every time in Rosetta is a tz-aware ``datetime`` in UTC."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, tzinfo
from datetime import time as time_of_day


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


def coerce_utc(value: object, *, zone: tzinfo, name: str = "time") -> datetime:
    """A source's time value as a tz-aware UTC datetime; ValueError if it is not a time.

    Accepts a ``datetime`` (a naive one is read in ``zone``, the source's IANA
    zone), a ``date`` (midnight in ``zone``), an ISO 8601 string (an offset or
    ``Z`` wins over ``zone``) or a number of seconds since the POSIX epoch (UTC).
    Connectors use it so every source's times are parsed by the same rules.
    """
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    if isinstance(value, str):
        text = value.strip()
        if not text:
            raise ValueError(f"{name} is empty")
        value = datetime.fromisoformat(text)
    if isinstance(value, datetime):
        return ensure_utc(value if value.tzinfo is not None else value.replace(tzinfo=zone), name=name)
    if isinstance(value, date):
        return ensure_utc(datetime.combine(value, time_of_day(), tzinfo=zone), name=name)
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ValueError(f"{name} {value!r} is not a finite number of seconds")
        return from_timestamp(float(value))
    raise ValueError(f"{name} {value!r} ({type(value).__name__}) is not a time")
