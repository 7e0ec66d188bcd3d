"""mnistlab's Optuna sweeper for Hydra 1.3 and Optuna 4: ``override /hydra/sweeper: mnistlab_optuna``."""
