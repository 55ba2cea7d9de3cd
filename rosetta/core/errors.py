"""One error tree for all of Rosetta, grouped by what the caller must do.

- :class:`ConfigError`: a setting is wrong; fail fast, do not retry, fix the setting.
- :class:`RetriableError`: a transient fault (network, 5xx, throttling); retry later.
- :class:`FatalError`: the run cannot go on and a retry will not help.
- :class:`BadRecordError`: one input record is unusable; quarantine it with its
  reason and go on with the rest.

Only the orchestration layer turns these into Airflow retries or failures.
Every message names the input and the fix.
"""

from __future__ import annotations


class RosettaError(Exception):
    """Base of every error Rosetta raises on purpose."""


class ConfigError(RosettaError):
    """A configuration value is missing or wrong.

    ``setting`` names the setting to fix (an environment variable, a config
    field or an Airflow connection) so the message can say where to look.
    """

    def __init__(self, message: str, *, setting: str | None = None) -> None:
        self.setting = setting
        if setting and setting not in message:
            message = f"{message} (setting: {setting})"
        super().__init__(message)


class RetriableError(RosettaError):
    """A transient failure: the same call may succeed later."""


class FatalError(RosettaError):
    """The operation cannot succeed; retrying will not help."""


class BadRecordError(RosettaError):
    """One record cannot be used.  It goes to quarantine with ``reason``.

    ``payload`` optionally carries the raw bytes so quarantine can keep them:
    nothing is lost.
    """

    def __init__(self, reason: str, *, source_id: str | None = None,
                 payload: bytes | None = None) -> None:
        self.reason = reason
        self.source_id = source_id
        self.payload = payload
        prefix = f"{source_id}: " if source_id else ""
        super().__init__(prefix + reason)


class NotFoundError(FatalError, KeyError):
    """A key, id or file that was asked for does not exist."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""
