"""DICOM DA/TM/DT values as UTC datetimes, and the one event time chosen per image.

A DICOM time is local to the site unless TimezoneOffsetFromUTC (0008,0201) or a DT's own
``&ZZXX`` suffix says otherwise.  Every conversion here says which it used: ``+offset`` (from the
data) or ``+site-timezone`` (the configured IANA zone), so a reader can tell a measured time from
an assumed one.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from typing import Any

from rosetta.core.timeutil import ensure_utc

#: (date attribute, time attribute, origin label), in the order the event time is chosen.
EVENT_TIMES = (("AcquisitionDate", "AcquisitionTime", "acquisition"), ("ContentDate", "ContentTime", "content"),
               ("SeriesDate", "SeriesTime", "series"), ("StudyDate", "StudyTime", "study"),
               ("InstanceCreationDate", "InstanceCreationTime", "instance-creation"))
FROM_OFFSET, FROM_SITE = "+offset", "+site-timezone"


class NoEventTimeError(ValueError):
    """The header has no acquisition, content, series or study date."""


def parse_offset(value: str) -> tzinfo | None:
    """TimezoneOffsetFromUTC (``+HHMM``/``-HHMM``) as a fixed zone; None if absent or malformed."""
    value = value.strip()
    if len(value) != 5 or value[0] not in "+-" or not value[1:].isdigit():
        return None
    hours, minutes = int(value[1:3]), int(value[3:5])
    if hours > 14 or minutes > 59:
        return None
    sign = 1 if value[0] == "+" else -1
    return timezone(sign * timedelta(hours=hours, minutes=minutes))


def parse_da(value: str) -> date | None:
    """DICOM DA (``YYYYMMDD``, or the retired ``YYYY.MM.DD``)."""
    value = value.strip().replace(".", "")
    try:
        return datetime.strptime(value, "%Y%m%d").date() if len(value) == 8 else None
    except ValueError:
        return None


def parse_tm(value: str) -> time | None:
    """DICOM TM (``HH[MM[SS[.FFFFFF]]]``, or the retired ``HH:MM:SS``)."""
    value = value.strip().replace(":", "")
    if not value:
        return None
    whole, _, fraction = value.partition(".")
    if not whole.isdigit() or len(whole) not in (2, 4, 6) or (fraction and not fraction.isdigit()):
        return None
    hour, minute, second = int(whole[0:2]), int(whole[2:4] or 0), int(whole[4:6] or 0)
    if hour > 23 or minute > 59 or second > 60:
        return None
    return time(hour, minute, min(second, 59), int((fraction or "0")[:6].ljust(6, "0")))


def parse_dt(value: str, zone: tzinfo) -> datetime | None:
    """DICOM DT (``YYYYMMDDHHMMSS.FFFFFF&ZZXX``) in UTC; ``zone`` when it carries no offset of its own."""
    value = value.strip()
    offset = None
    if len(value) > 5 and value[-5] in "+-":
        offset, value = parse_offset(value[-5:]), value[:-5]
    day = parse_da(value[:8])
    if day is None:
        return None
    clock = parse_tm(value[8:]) or time()
    return ensure_utc(datetime.combine(day, clock, tzinfo=offset or zone))


def event_time(ds: Mapping[str, Any] | Any, site_zone: tzinfo) -> tuple[datetime, str]:
    """The image's event time in UTC and its origin, e.g. ``acquisition+offset`` or ``study+site-timezone``.

    Acquisition DateTime first, then acquisition, content, series and study date + time, and last the
    instance creation date (when the file was made: later than the image, but better than nothing).
    A missing time of day is midnight.  Raises NoEventTimeError when there is no usable date.
    """
    offset = parse_offset(str(ds.get("TimezoneOffsetFromUTC", "") or ""))
    zone, flag = (offset, FROM_OFFSET) if offset else (site_zone, FROM_SITE)
    if ds.get("AcquisitionDateTime"):
        text = str(ds.get("AcquisitionDateTime"))
        moment = parse_dt(text, zone)
        if moment is not None:
            own_offset = len(text.strip()) > 5 and text.strip()[-5] in "+-"
            return moment, "acquisition-datetime" + (FROM_OFFSET if own_offset else flag)
    for date_attr, time_attr, label in EVENT_TIMES:
        day = parse_da(str(ds.get(date_attr, "") or ""))
        if day is not None:
            clock = parse_tm(str(ds.get(time_attr, "") or "")) or time()
            return ensure_utc(datetime.combine(day, clock, tzinfo=zone)), label + flag
    raise NoEventTimeError("no acquisition, content, series, study or instance creation date in the header; "
                           "cannot place it in time")
