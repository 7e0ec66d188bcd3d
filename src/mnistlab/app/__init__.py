"""The programs: run.py's Hydra task (validation first, a sweep's or a search's job, the summary)
and the ``mnistlab`` commands."""
