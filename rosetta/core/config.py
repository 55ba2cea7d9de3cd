"""Base class for every typed configuration in Rosetta."""

from __future__ import annotations

import os
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from rosetta.core.errors import ConfigError


class StrictModel(BaseModel):
    """A pydantic model that rejects unknown keys and is immutable once built."""

    model_config = ConfigDict(extra="forbid", frozen=True)


M = TypeVar("M", bound=StrictModel)


def validate_config(model: type[M], data: dict[str, object], *, where: str) -> M:
    """Build ``model`` from ``data``, turning pydantic's error into a :class:`ConfigError`.

    ``where`` says where the values came from (an env prefix, a connection id)
    so the message points at the thing to fix.
    """
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"invalid {model.__name__} from {where}: {problems}", setting=where) from None


def env(name: str, default: str | None = None) -> str | None:
    """Read an environment variable, treating the empty string as unset."""
    value = os.environ.get(name)
    return value if value not in (None, "") else default
