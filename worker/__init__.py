"""The GPU process: generation backends, segment files and joining."""
