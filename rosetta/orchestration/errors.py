"""Turn Rosetta's error tree into what Airflow should do with a task."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from rosetta.core.errors import ConfigError, FatalError

P = ParamSpec("P")
R = TypeVar("R")


def airflow_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """ConfigError and FatalError fail the task at once (no retries: a retry cannot fix them);
    RetriableError and anything unexpected propagate, so the task's retries apply."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except (ConfigError, FatalError) as exc:
            from airflow.sdk.exceptions import AirflowFailException

            raise AirflowFailException(f"{type(exc).__name__}: {exc}") from exc

    return wrapper
