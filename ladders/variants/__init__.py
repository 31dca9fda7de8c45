"""Run variants that drive the one loop: swarms, grown runs, continual pre-training and WSD decay branches."""
