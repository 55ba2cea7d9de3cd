"""Rosetta: a data pipeline and feature store for vision-language training data.

This package holds the shared kernel (``rosetta.core``), the Airflow glue
(``rosetta.orchestration``) and the ``rosetta`` command line.  The layers of the
product live in the top-level packages ``schemas``, ``connectors``,
``transforms`` and ``feature_store``.
"""

from __future__ import annotations

__version__ = "0.1.0"
