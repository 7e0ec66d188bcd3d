"""What every layer uses: errors a user can fix and the one line and exit code each becomes,
redaction of secrets, signal handling during a run, and whether a recorded process still runs.
Standard library, plus Hydra's and OmegaConf's error types."""
