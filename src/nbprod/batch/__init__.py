"""Batch jobs past one machine, on Dask: ``nbprod.score`` (a model over partitioned parquet).

Verbs layer: it combines serving (the model as the server loads and runs it), monitoring (the
prediction log) and the registry (a URI's model directory). Each module imports Dask only
when a job runs.
"""
