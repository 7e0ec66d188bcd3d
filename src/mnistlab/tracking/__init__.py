"""Everything MLflow, and the only package that imports it: the store, a run's lifecycle and what
it logs, provenance, Keras models in MLflow and the registry, sweeps' parent runs, and reading runs
back for comparisons."""
