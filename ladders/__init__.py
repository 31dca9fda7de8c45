"""Training: run/ (one run, the one loop), variants/ (swarm, growth, CPT), the ladder (config, plan, runner, store)."""
