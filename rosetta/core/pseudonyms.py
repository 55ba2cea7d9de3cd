"""Keyed, deterministic pseudonyms: the same input and key give the same output on every run and source.

One :class:`Pseudonymizer` serves every source that carries patient data (DICOM files, DICOMweb,
DIMSE, clinical reports), so a patient's new identifier, new UIDs and date shift agree wherever
the patient appears and time alignment between images and reports still works.  The key is a
secret (an Airflow connection or secret backend, never stored with the data); without it the
pseudonyms cannot be reversed or recomputed from the originals.

Every derivation is HMAC-SHA256 over ``namespace NUL value``, so a UID and a patient ID with the
same characters never collide.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from functools import lru_cache
from typing import Any

from rosetta.core.errors import ConfigError

#: Where the key comes from, for messages.
KEY_HINT = ("create the Airflow connection 'rosetta_deid' with the key as its password (or set ROSETTA_DEID_KEY), "
            "at least 16 characters of secret random text")
MIN_KEY_LENGTH = 16


class Pseudonymizer:
    """Keyed pseudonyms for identifiers, UIDs and per-patient date shifts.

    ``max_shift_days``: dates move back by 1 to ``max_shift_days`` whole days, one shift per patient.
    """

    def __init__(self, key: str | bytes, *, max_shift_days: int = 3650) -> None:
        raw = key.encode() if isinstance(key, str) else key
        if len(raw) < MIN_KEY_LENGTH:
            raise ConfigError(f"the de-identification key is {len(raw)} bytes, too short to be secret; {KEY_HINT}",
                              setting="deid.key")
        if max_shift_days < 1:
            raise ConfigError("max_shift_days must be at least 1", setting="deid.max_date_shift_days")
        self._key = raw
        self.max_shift_days = max_shift_days
        # Per-instance caches: a study's UIDs repeat in every one of its instances.
        self.uid = lru_cache(maxsize=65536)(self._uid)
        self.identifier = lru_cache(maxsize=65536)(self._identifier)

    def digest(self, namespace: str, value: str) -> bytes:
        """The 32-byte keyed digest of ``value`` in ``namespace``."""
        return hmac.new(self._key, namespace.encode() + b"\0" + value.encode("utf-8", "surrogateescape"),
                        hashlib.sha256).digest()

    def _identifier(self, value: str, namespace: str = "id", length: int = 16) -> str:
        """An uppercase hex pseudonym of ``length`` characters (16 fits DICOM SH and LO values)."""
        return self.digest(namespace, value).hex()[:length].upper()

    def _uid(self, value: str) -> str:
        """A new DICOM UID for ``value``: ``2.25.`` and a 128-bit integer (at most 44 characters)."""
        return "2.25." + str(int.from_bytes(self.digest("uid", value.strip().rstrip("\0"))[:16], "big"))

    def patient_id(self, value: str) -> str:
        return self.identifier(value.strip(), "patient")

    def accession(self, value: str) -> str:
        return self.identifier(value.strip(), "accession")

    def date_shift_days(self, patient_id: str) -> int:
        """Whole days to move every date of ``patient_id`` back by (1..max_shift_days)."""
        return 1 + int.from_bytes(self.digest("date-shift", patient_id.strip())[:8], "big") % self.max_shift_days

    # -- sealed references ------------------------------------------------------------------------
    def seal(self, value: dict[str, Any]) -> str:
        """``value`` (JSON-able) encrypted and authenticated with a key derived from the secret.

        For what a source needs to fetch an item again (original UIDs, a path) that must not be
        readable where plans and state are kept; only a holder of the key can :meth:`unseal` it.
        """
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        nonce = os.urandom(12)
        sealed = AESGCM(self.digest("seal", "aes-256-gcm")).encrypt(nonce, json.dumps(value).encode(), b"rosetta")
        return base64.urlsafe_b64encode(nonce + sealed).decode()

    def unseal(self, token: str) -> dict[str, Any]:
        """The value :meth:`seal` encrypted; ConfigError if it was sealed with another key or altered."""
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        try:
            raw = base64.urlsafe_b64decode(token.encode())
            opened = AESGCM(self.digest("seal", "aes-256-gcm")).decrypt(raw[:12], raw[12:], b"rosetta")
        except (InvalidTag, ValueError) as exc:
            raise ConfigError("a sealed reference does not open with the current de-identification key (the key "
                              f"changed since listing, or the plan was altered: {type(exc).__name__}); re-run the "
                              "listing with the current key", setting="deid.key") from None
        value: dict[str, Any] = json.loads(opened)
        return value
