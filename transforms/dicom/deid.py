"""De-identification: the DICOM PS3.15 Annex E Basic Application Level Confidentiality Profile.

Every attribute action of Table E.1-1 (``data/ps3_15_table_e1_1.json``, with its source edition)
is applied, recursively through sequences, with the options a research pipeline needs:

- Retain Longitudinal Temporal Information with Modified Dates (on by default): every date of a
  patient moves back by the same keyed number of days (:class:`~rosetta.core.pseudonyms.Pseudonymizer`),
  times of day are kept, so intervals, order and image-report alignment survive;
- deterministic UID replacement (``U``): a keyed hash, so a study gets the same new UID in every
  run and from every source;
- Retain Patient Characteristics, Device Identity, Institution Identity, Full Dates, UIDs (off by
  default), each the table's ``K`` column for that option;
- private attributes removed unless on ``safe_private`` (Retain Safe Private Option).

Choices the table leaves to the implementation (no IOD module tables here), all on the safe side:
``Z/D``, ``X/D``, ``X/Z/D`` -> a dummy value (``D``), which keeps Type 1 attributes present;
``X/Z`` -> zero length; ``X/Z/U*`` -> keep the sequence and replace the UIDs inside it.  The
option columns' ``C`` (clean) is applied for dates (shift) and otherwise falls back to the basic
action, since free text is not cleaned here.  Beyond the table: patient ID, patient name and
accession number get keyed pseudonyms (a consistent dummy value, which ``Z``/``D`` allow) so
records stay linkable to their reports; any other UI value that is not a registered DICOM UID
is replaced, any other person name is emptied, and a public attribute unknown to the data
dictionary (opaque bytes) is removed.

Images flagged BurnedInAnnotation=YES are refused (:class:`BurnedInAnnotationError`) unless a
:class:`PixelCleaningRule` matches the device and blanks the regions where the text is burned in.
What was done is recorded in the instance: Patient Identity Removed (0012,0062), De-identification
Method (0012,0063) and its Code Sequence (0012,0064), Longitudinal Temporal Information Modified
(0028,0303).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, field_validator, model_validator

from rosetta.core.config import StrictModel, env
from rosetta.core.errors import ConfigError
from rosetta.core.pseudonyms import KEY_HINT, Pseudonymizer

TABLE_PATH = Path(__file__).with_name("data") / "ps3_15_table_e1_1.json"

#: Option name -> (column of Table E.1-1, CID 7050 code value, code meaning).
OPTIONS: dict[str, tuple[str, str, str]] = {
    "retain_safe_private": ("rtnSafePrivOpt", "113111", "Retain Safe Private Option"),
    "retain_uids": ("rtnUIDsOpt", "113110", "Retain UIDs Option"),
    "retain_device_identity": ("rtnDevIdOpt", "113109", "Retain Device Identity Option"),
    "retain_institution_identity": ("rtnInstIdOpt", "113112", "Retain Institution Identity Option"),
    "retain_patient_characteristics": ("rtnPatCharsOpt", "113108", "Retain Patient Characteristics Option"),
    "retain_full_dates": ("rtnLongFullDatesOpt", "113106",
                          "Retain Longitudinal Temporal Information Full Dates Option"),
    "retain_modified_dates": ("rtnLongModifDatesOpt", "113107",
                              "Retain Longitudinal Temporal Information Modified Dates Option"),
}
BASIC_PROFILE_CODE = ("113100", "Basic Application Confidentiality Profile")
CLEAN_PIXEL_CODE = ("113101", "Clean Pixel Data Option")

# Actions after resolving the table's alternatives and options.
KEEP, REMOVE, EMPTY, DUMMY, UID, SHIFT = "K", "X", "Z", "D", "U", "SHIFT"
_REDUCE = {"D": DUMMY, "Z": EMPTY, "X": REMOVE, "K": KEEP, "C": KEEP, "U": UID, "Z/D": DUMMY, "X/Z": EMPTY,
           "X/D": DUMMY, "X/Z/D": DUMMY, "X/Z/U*": UID}

PATIENT_ID, PATIENT_NAME, ACCESSION, TIMEZONE_OFFSET = 0x00100020, 0x00100010, 0x00080050, 0x00080201
SOP_INSTANCE_UID = 0x00080018
#: UI attributes that name a class or a syntax, never an instance: kept even when not registered
#: (a vendor's private SOP class).
CLASS_UID_TAGS = frozenset({0x00080016, 0x00081150, 0x00080062, 0x0008001A, 0x0008001B, 0x00020002, 0x00020010,
                            0x00041510, 0x00041512, 0x0004151A, 0x00400554})
#: File meta attributes that can name the sending site; removed.
META_SITE_TAGS = (0x00020016, 0x00020017, 0x00020018, 0x00020100, 0x00020102)

_DUMMY_TEXT = "ANONYMIZED"
_DUMMY_BY_VR: dict[str, Any] = {
    "PN": "ANONYMOUS", "DA": "19000101", "TM": "000000", "DT": "19000101000000", "AS": "000D", "IS": "0",
    "DS": "0", "US": 0, "SS": 0, "UL": 0, "SL": 0, "UV": 0, "SV": 0, "FL": 0.0, "FD": 0.0, "AT": 0,
    "OB": b"\0\0", "OW": b"\0\0", "OD": b"\0" * 8, "OF": b"\0" * 4, "OL": b"\0" * 4, "OV": b"\0" * 8, "UN": b"\0\0",
    "UR": "", "UI": None,
}


class BurnedInAnnotationError(ValueError):
    """The image says identifying text is burned into its pixels and no cleaning rule covers it."""


class PixelCleaningRule(StrictModel):
    """Regions to blank in images of one kind of device (all given matchers must equal the header's value).

    ``boxes``: ``[x, y, width, height]`` in pixels from the top-left corner, applied to every frame.
    """

    manufacturer: str | None = None
    model: str | None = None
    modality: str | None = None
    rows: int | None = None
    columns: int | None = None
    boxes: list[tuple[int, int, int, int]] = Field(min_length=1)

    def matches(self, ds: Any) -> bool:
        wanted = {"Manufacturer": self.manufacturer, "ManufacturerModelName": self.model,
                  "Modality": self.modality, "Rows": self.rows, "Columns": self.columns}
        return all(value is None or str(ds.get(keyword, "")).strip() == str(value)
                   for keyword, value in wanted.items())


class DeidConfig(StrictModel):
    """How DICOM is de-identified before anything is stored.

    ``key``: the secret for pseudonyms, UIDs and date shifts; leave it unset in files and let the
    Airflow connection ``rosetta_deid`` (password) or ``ROSETTA_DEID_KEY`` provide it.
    ``safe_private``: private attributes to keep, each ``"GGGG,PRIVATE CREATOR,EE"`` (group, the
    creator string, the element's low byte), for example ``"0019,GEMS_ACQU_01,10"``.
    """

    enabled: bool = True
    key: SecretStr | None = None
    retain_modified_dates: bool = True
    retain_full_dates: bool = False
    retain_patient_characteristics: bool = False
    retain_device_identity: bool = False
    retain_institution_identity: bool = False
    retain_uids: bool = False
    safe_private: list[str] = Field(default_factory=list)
    max_date_shift_days: int = Field(default=3650, ge=1, le=36500)
    pixel_cleaning: list[PixelCleaningRule] = Field(default_factory=list)

    @field_validator("safe_private")
    @classmethod
    def _safe_private_entries(cls, value: list[str]) -> list[str]:
        for entry in value:
            parts = entry.split(",")
            if len(parts) != 3 or len(parts[0]) != 4 or len(parts[2]) != 2 or not parts[1].strip():
                raise ValueError(f"safe_private entry {entry!r} is not 'GGGG,PRIVATE CREATOR,EE'")
            if int(parts[0], 16) % 2 == 0:
                raise ValueError(f"safe_private entry {entry!r}: group {parts[0]} is not private (odd)")
            int(parts[2], 16)
        return value

    @model_validator(mode="after")
    def _one_date_option(self) -> DeidConfig:
        if self.retain_full_dates and self.retain_modified_dates:
            raise ValueError("retain_full_dates and retain_modified_dates exclude each other; choose one")
        return self

    def secret(self) -> str:
        """The key from the config or ``ROSETTA_DEID_KEY``; ConfigError naming where to put it if neither."""
        key = self.key.get_secret_value() if self.key else env("ROSETTA_DEID_KEY")
        if not key:
            raise ConfigError(f"DICOM de-identification needs a secret key: {KEY_HINT}", setting="deid.key")
        return key

    @property
    def options(self) -> list[str]:
        return [name for name in OPTIONS if getattr(self, name, False)] + \
            (["retain_safe_private"] if self.safe_private else [])


@dataclass(frozen=True)
class ProfileTable:
    """Table E.1-1: actions by exact tag, and by masked tag for repeating groups (``50XX,XXXX``)."""

    edition: str
    exact: dict[int, tuple[str, dict[str, str]]]
    masked: tuple[tuple[int, int, str, dict[str, str]], ...]  # (mask, value, basic, options)


@cache
def profile_table() -> ProfileTable:
    """The bundled Table E.1-1 (loaded once per process)."""
    data = json.loads(TABLE_PATH.read_text(encoding="utf-8"))
    exact: dict[int, tuple[str, dict[str, str]]] = {}
    masked: list[tuple[int, int, str, dict[str, str]]] = []
    for row in data["rows"]:
        tag_text, basic, options = row[0], row[2], row[3]
        parsed = _parse_tag(tag_text)
        if parsed is None:
            continue  # the private-attribute row: handled by the private-tag rule
        mask, value = parsed
        if mask == 0xFFFFFFFF:
            exact[value] = (basic, options)
        else:
            masked.append((mask, value, basic, options))
    meta = data.get("meta", {})
    return ProfileTable(edition=f"PS3.15 E.1-1 {meta.get('edition', '?')}",
                        exact=exact, masked=tuple(masked))


def _parse_tag(text: str) -> tuple[int, int] | None:
    """``(0008,0050)`` -> (mask, value); ``(50XX,XXXX)`` masks the X nibbles; None for non-tag rows."""
    body = text.strip().strip("()").replace(" ", "")
    group, _, element = body.partition(",")
    digits = group + element
    if len(group) != 4 or len(element) != 4 or any(c not in "0123456789ABCDEFabcdefXx" for c in digits):
        return None
    mask = int("".join("0" if c in "Xx" else "F" for c in digits), 16)
    value = int("".join("0" if c in "Xx" else c for c in digits), 16)
    return mask, value


def resolve_action(basic: str, options: dict[str, str], enabled_columns: frozenset[str]) -> tuple[str, str]:
    """(action, fallback) for one row under the enabled option columns.

    An option's ``K`` keeps the attribute; the modified-dates option's ``C`` shifts it (fallback:
    the basic action, for a value that is not a date); any other ``C`` cleans free text, which is
    not done here, so the basic action stands.
    """
    reduced = _REDUCE.get(basic.replace(" ", "").upper(), REMOVE)
    if any(options.get(column) == "K" for column in enabled_columns):
        return KEEP, KEEP
    if "rtnLongModifDatesOpt" in enabled_columns and options.get("rtnLongModifDatesOpt") == "C":
        return SHIFT, reduced
    return reduced, reduced


@dataclass
class DeidResult:
    """What de-identifying one instance did (counts, for metadata and logs; no identifiers)."""

    date_shift_days: int | None
    removed: int = 0
    replaced: int = 0
    pixels_cleaned: bool = False
    notes: list[str] = field(default_factory=list)


@dataclass
class _Walk:
    patient: str  # the instance's original Patient ID
    shift: int | None
    result: DeidResult


class Deidentifier:
    """Applies the profile to pydicom datasets in place; one per source, safe to share across threads."""

    def __init__(self, config: DeidConfig) -> None:
        self.config = config
        self.pseudonyms = Pseudonymizer(config.secret(), max_shift_days=config.max_date_shift_days)
        table = profile_table()
        self.edition = table.edition
        columns = frozenset(OPTIONS[name][0] for name in config.options if name != "retain_safe_private")
        self._exact = {tag: resolve_action(basic, opts, columns) for tag, (basic, opts) in table.exact.items()}
        self._masked = tuple((mask, value, *resolve_action(basic, opts, columns))
                             for mask, value, basic, opts in table.masked)
        self._safe_private = {(int(g, 16), creator.strip(), int(e, 16))
                              for g, creator, e in (entry.split(",") for entry in config.safe_private)}
        self._method = self._method_text()
        self._items_cache: dict[bool, list[Any]] = {}

    # -- public --------------------------------------------------------------------------------
    def deidentify(self, ds: Any) -> DeidResult:
        """De-identify ``ds`` (a pydicom Dataset) in place.

        Raises BurnedInAnnotationError for BurnedInAnnotation=YES without a matching cleaning rule.
        """
        patient = str(ds.get("PatientID", "") or "").strip()
        shift = self.pseudonyms.date_shift_days(patient) if self.config.retain_modified_dates else None
        result = DeidResult(date_shift_days=shift)
        walk = _Walk(patient, shift, result)
        if not patient:
            result.notes.append("no PatientID: the date shift and pseudonym are those of the empty ID")
        if str(ds.get("BurnedInAnnotation", "")).strip().upper() == "YES":
            rule = next((r for r in self.config.pixel_cleaning if r.matches(ds)), None)
            if rule is None:
                raise BurnedInAnnotationError(
                    "BurnedInAnnotation is YES: identifying text may be burned into the pixels; add a pixel_cleaning "
                    "rule for this device (manufacturer, model, size and the boxes to blank) or leave the image out")
            _clean_pixels(ds, rule)
            result.pixels_cleaned = True
        self._walk(ds, walk)
        meta = getattr(ds, "file_meta", None)
        if meta is not None:
            for tag in META_SITE_TAGS:
                if tag in meta:
                    del meta[tag]
            if "SOPInstanceUID" in ds:
                meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        self._record(ds, result)
        return result

    # -- the walk ------------------------------------------------------------------------------
    def _action(self, tag: int) -> tuple[str, str] | None:
        found = self._exact.get(tag)
        if found is not None or not self._masked:
            return found
        for mask, value, action, fallback in self._masked:
            if tag & mask == value:
                return action, fallback
        return None

    def _walk(self, ds: Any, walk: _Walk) -> None:
        from pydicom.datadict import dictionary_VR

        result = walk.result
        private_kept: set[tuple[int, int]] = set()  # (group, block) of kept private elements
        creators: list[int] = []
        for tag in list(ds.keys()):
            number = int(tag)
            group, element = number >> 16, number & 0xFFFF
            if group & 1:
                if 0x0010 <= element <= 0x00FF:
                    creators.append(number)
                elif self._keep_private(ds, group, element):
                    private_kept.add((group, element >> 8))
                    continue
                else:
                    del ds[tag]
                    result.removed += 1
                continue
            if element == 0 and group != 0x0002:  # group lengths: stale once anything changes
                del ds[tag]
                result.removed += 1
                continue
            raw = ds.get_item(tag, keep_deferred=True)
            vr = getattr(raw, "VR", None)
            if not vr or vr == "UN":  # implicit, or stored as UN: the dictionary says what it is (SQ, UI...)
                try:
                    vr = dictionary_VR(number).split(" or ")[0]
                except KeyError:  # an unknown public attribute as opaque bytes: nothing says it is harmless
                    del ds[tag]
                    result.removed += 1
                    continue
            found = self._action(number)
            if found is None:
                self._unlisted(ds, tag, raw, number, vr, walk)
                continue
            action, fallback = found
            if action == SHIFT and (vr == "TM" or number == TIMEZONE_OFFSET):
                action = KEEP  # whole-day shifts leave the time of day and the UTC offset as they were
            elif action == SHIFT and vr not in ("DA", "DT"):
                action = fallback
            self._apply(ds, tag, number, vr, action, walk)
        for number in creators:  # a creator stays only while an element it reserves stays
            if (number >> 16, number & 0xFF) not in private_kept:
                del ds[number]
                result.removed += 1

    def _apply(self, ds: Any, tag: Any, number: int, vr: str, action: str, walk: _Walk) -> None:
        """One attribute's action.  New values replace the element whole: converting the old value first
        (pydicom's slowest step) is only done where the new value depends on it, and then from the raw text."""
        result = walk.result
        if action == REMOVE:
            del ds[tag]
            result.removed += 1
            return
        if action == KEEP or (action == UID and vr == "SQ"):
            if vr == "SQ":
                self._items(ds, tag, walk)
            return
        result.replaced += 1
        if action == SHIFT:
            _replace(ds, number, vr, [_shift_one(v, vr, walk.shift or 0) for v in _texts(ds, tag)])
        elif action == UID and vr == "UI":
            _replace(ds, number, vr, [self.pseudonyms.uid(v) if v else v for v in _texts(ds, tag)])
        elif number in (PATIENT_ID, ACCESSION):  # linkable pseudonyms of the converted (charset-decoded) value
            _replace(ds, number, vr, self._dummy(number, vr, ds[tag].value, walk.patient))
        elif (action == EMPTY and number != PATIENT_NAME) or action == UID:
            _replace(ds, number, vr, [] if vr == "SQ" else None)
        else:
            _replace(ds, number, vr, self._dummy(number, vr, None, walk.patient))  # DUMMY

    def _unlisted(self, ds: Any, tag: Any, raw: Any, number: int, vr: str, walk: _Walk) -> None:
        """Attributes the table does not list: kept, except instance UIDs and person names."""
        result = walk.result
        if vr == "SQ":
            self._items(ds, tag, walk)
        elif vr == "UI" and number not in CLASS_UID_TAGS:
            if isinstance(getattr(raw, "value", None), bytes) and _all_registered(raw.value):
                return  # a registered UID (a coding scheme, a context group): left as read, unconverted
            old = _texts(ds, tag)
            new = [self._new_uid(v) for v in old]
            if new != old:
                _replace(ds, number, vr, new)
                result.replaced += 1
        elif vr == "PN":
            ds[tag].value = None
            result.replaced += 1

    def _items(self, ds: Any, tag: Any, walk: _Walk) -> None:
        """De-identify a sequence's items; a sequence found clean goes back to its raw form (cheap to write)."""
        from pydicom.dataelem import RawDataElement

        raw = ds.get_item(tag)
        result = walk.result
        before = result.removed + result.replaced
        for item in ds[tag].value or ():
            self._walk(item, walk)
        if result.removed + result.replaced == before and isinstance(raw, RawDataElement):
            ds[tag] = raw

    def _keep_private(self, ds: Any, group: int, element: int) -> bool:
        if not self._safe_private:
            return False
        creator_tag = (group << 16) | (element >> 8)
        creator = ds.get(creator_tag)
        return creator is not None and (group, str(creator.value).strip(), element & 0xFF) in self._safe_private

    # -- values --------------------------------------------------------------------------------
    def _new_uid(self, uid: str) -> str:
        """A UID's keyed replacement; a registered DICOM UID (a class, a syntax, a coding scheme) stays."""
        return uid if not uid or _registered(uid) else self.pseudonyms.uid(uid)

    def _dummy(self, number: int, vr: str, value: Any, patient: str) -> Any:
        pseudonyms = self.pseudonyms
        if number == PATIENT_ID:
            return pseudonyms.patient_id(str(value or ""))
        if number == PATIENT_NAME:  # the instance's patient, whatever the nesting: one pseudonym per patient
            return f"ANON^{pseudonyms.patient_id(patient)}"
        if number == ACCESSION:
            return pseudonyms.accession(str(value or "")) if value else None
        if vr == "SQ":
            return []
        if vr == "UI":
            return pseudonyms.uid(f"dummy:{number:08x}")
        if vr in _DUMMY_BY_VR:
            return _DUMMY_BY_VR[vr]
        return _DUMMY_TEXT

    # -- the record of what was done -------------------------------------------------------------
    def _code_items(self, pixels_cleaned: bool) -> list[Any]:
        """The De-identification Method Code Sequence items, built once per de-identifier and shared by the
        instances it writes (creating pydicom datasets is slow); they are only ever read."""
        from pydicom.dataset import Dataset

        cached = self._items_cache.get(pixels_cleaned)
        if cached is None:
            codes = [BASIC_PROFILE_CODE]
            if pixels_cleaned:
                codes.append(CLEAN_PIXEL_CODE)
            codes += [(OPTIONS[name][1], OPTIONS[name][2]) for name in self.config.options]
            cached = []
            for value, meaning in codes:
                item = Dataset()
                item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "DCM", meaning
                cached.append(item)
            self._items_cache[pixels_cleaned] = cached
        return list(cached)

    def _method_text(self) -> str:
        names = [OPTIONS[name][2] for name in self.config.options]
        text = f"Rosetta: {BASIC_PROFILE_CODE[1]} ({self.edition})"
        return (text + "; " + "; ".join(names))[:64] if names else text[:64]

    def _record(self, ds: Any, result: DeidResult) -> None:
        ds.DeidentificationMethodCodeSequence = self._code_items(result.pixels_cleaned)
        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = self._method
        if result.pixels_cleaned:
            ds.BurnedInAnnotation = "NO"
        ds.LongitudinalTemporalInformationModified = (
            "MODIFIED" if self.config.retain_modified_dates else
            "UNMODIFIED" if self.config.retain_full_dates else "REMOVED")


def _texts(ds: Any, tag: Any) -> list[str]:
    """An ASCII-valued element's values (DA, DT, UI) read from its raw bytes, without pydicom's conversion."""
    raw = ds.get_item(tag)
    value = raw.value
    if isinstance(value, bytes):
        return [part.strip(" \0") for part in value.decode("latin-1").split("\\")] if value else []
    if value is None or value == "":
        return []
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return [str(v) for v in value]
    return [str(value)]


def _replace(ds: Any, number: int, vr: str, value: Any) -> None:
    """Put a new element in place of the old one (one value, several, or None for zero length).

    ASCII text values go in as raw elements holding the bytes pydicom's writer would produce (joined by
    backslashes, padded to even length with NUL for UI and space otherwise): writing them is then a copy,
    and whoever reads them converts them as any element read from a file.  Other values are DataElements.
    """
    from pydicom.dataelem import DataElement, RawDataElement
    from pydicom.tag import Tag

    if isinstance(value, list) and vr != "SQ":
        value = value[0] if len(value) == 1 else (value or None)
    implicit, little = getattr(ds, "original_encoding", (None, None))
    encoded = _text_bytes(vr, value) if implicit is not None and little is not None else None
    if encoded is None:
        ds[number] = DataElement(number, vr, value)
    else:
        ds[number] = RawDataElement(Tag(number), vr, len(encoded), encoded, 0, bool(implicit), bool(little))


_TEXT_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI",
                       "UR", "UT"})


def _text_bytes(vr: str, value: Any) -> bytes | None:
    """The encoded value of a text element holding ASCII strings (or nothing); None for anything else."""
    if vr not in _TEXT_VRS:
        return None
    values = [] if value is None else list(value) if isinstance(value, (list, tuple)) else [value]
    if not all(isinstance(v, str) and v.isascii() for v in values):
        return None
    encoded = "\\".join(values).encode("ascii")
    if len(encoded) % 2:
        encoded += b"\0" if vr == "UI" else b" "
    return encoded


def _registered(uid: str) -> bool:
    """True for a UID in the DICOM registry (pydicom knows its name): a class or syntax, never an identifier."""
    from pydicom.uid import UID

    return UID(uid).name != uid


def _all_registered(value: bytes) -> bool:
    """True if every UID in the raw value is a registered DICOM UID."""
    uids = [part.strip(" \0") for part in value.decode("ascii", "replace").split("\\")]
    return all(not uid or _registered(uid) for uid in uids)


def _shift_one(text: str, vr: str, days: int) -> str:
    text = text.strip()
    day_part, rest = text[:8], text[8:]
    if len(day_part) != 8 or not day_part.isdigit():
        return ""
    try:
        moved = date(int(day_part[:4]), int(day_part[4:6]), int(day_part[6:8])) - timedelta(days=days)
    except ValueError:
        return ""
    return moved.strftime("%Y%m%d") + (rest if vr == "DT" else "")


def _clean_pixels(ds: Any, rule: PixelCleaningRule) -> None:
    """Blank ``rule.boxes`` in every frame and store the pixels uncompressed (native)."""
    if "PixelData" not in ds:
        return
    from pydicom.uid import UID

    if UID(str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", ""))).is_compressed:
        ds.decompress(generate_instance_uid=False)
    pixels = ds.pixel_array
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    black = pixels.max() if str(ds.get("PhotometricInterpretation", "")) == "MONOCHROME1" else pixels.min()
    view = pixels if frames > 1 else pixels[None, ...]
    for x, y, width, height in rule.boxes:
        view[:, y:y + height, x:x + width, ...] = black
    ds.PixelData = pixels.tobytes()
