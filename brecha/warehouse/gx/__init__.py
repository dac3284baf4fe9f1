"""Great Expectations gates: suites as JSON in expectations/, batches read from the warehouse, results recorded.

``brecha.warehouse.validate`` is the entry point; this package holds its parts, one job per module:
``suites`` (load the JSON suites), ``batches`` (DataFrames and run-time parameters from DuckDB),
``runner`` (run Great Expectations, build Data Docs) and ``record`` (the ``ops.validation_results`` table).
"""
