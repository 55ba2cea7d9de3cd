"""Airflow glue: the only project code besides DAG files that imports Airflow.

Modules here stay light at import time (Airflow's own SDK, the standard library
and the project's light modules); heavy work is imported inside the task
callables.
"""
