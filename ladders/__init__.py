"""One training run and the ladder runner with its results store."""
