"""One run's training with Keras: the process's runtime (seeds, threads, precision), the input
pipeline, fit with its callbacks, per-epoch checkpoints, and the test-set evaluation."""
