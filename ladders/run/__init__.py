"""The single-run trainer: config, state, step, schedule, checkpoints, metrics, the one loop and `train`."""
