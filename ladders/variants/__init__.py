"""Run variants that drive the one loop: swarms, grown runs and continual pre-training."""
