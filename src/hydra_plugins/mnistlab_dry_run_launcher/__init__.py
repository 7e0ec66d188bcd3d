"""``hydra/launcher=dry_run``: list a sweep's jobs and validate each one's config; train nothing."""
