"""The Hydra-facing side of multiruns: the sweep tracker (a parent run per sweep), the Optuna search
(its space, its trials' link to their jobs, and the one adapter over Optuna's private API)."""
