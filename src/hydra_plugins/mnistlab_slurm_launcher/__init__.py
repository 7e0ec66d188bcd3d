"""mnistlab's SLURM launcher: hydra-submitit-launcher's, with a job SLURM ends a failed job, not the sweep's end."""
