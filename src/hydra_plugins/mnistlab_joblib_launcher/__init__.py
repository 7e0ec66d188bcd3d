"""mnistlab's joblib launcher: hydra/launcher=joblib, with a killed worker one failed job."""
