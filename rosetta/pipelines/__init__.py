"""Pipelines: the steps the DAGs run, as plain functions (no Airflow imports).

Each step reads its inputs from the object store, writes its outputs there and
returns a small JSON-able dict of URIs and counts, which is what travels
through XCom.  Benchmarks and tests call the same functions directly.
"""
