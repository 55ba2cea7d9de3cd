"""What a connector's contract test needs: a real source it can build, grow and break.

Every connector ships one harness module ``tests/contract/harness_<name>.py`` that defines
``HARNESS = MyHarness()``; the contract suite discovers them all and runs the same checks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import pytest


class ConnectorHarness(Protocol):
    #: registry name of the connector under test
    name: str

    def make_source(self, tmp_path: Path, request: pytest.FixtureRequest) -> dict[str, Any]:
        """Create a real source holding at least 3 good items; return the connector options.

        ``request.getfixturevalue`` gives access to service fixtures (``seaweedfs``...).
        """

    def add_new(self, options: dict[str, Any]) -> set[str]:
        """Add new good items to the source; return their source ids."""

    def add_bad(self, options: dict[str, Any]) -> set[str]:
        """Add malformed items the real source produces; return their source ids (to be quarantined)."""

    def bad_options(self, options: dict[str, Any]) -> list[dict[str, Any]]:
        """Misconfigured option sets: each must give a ConfigError (on build, ``check`` or listing)."""
