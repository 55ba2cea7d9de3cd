"""Source connectors: each turns one kind of source into Rosetta's records.

Connectors import no Airflow and no feature-store internals: they list what a
source holds and parse it into :mod:`schemas` records for whoever calls them.
"""
