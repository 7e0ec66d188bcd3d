"""What a comparison shows: runs grouped by configuration, the statistics (intervals, tests,
corrections), the tables, JSON and figures, and what one run's test predictions say; a run's
figures, drawn in a helper process (``drawing``). No MLflow: ``tracking`` reads the runs and logs
the results."""
