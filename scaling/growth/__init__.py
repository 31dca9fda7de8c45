"""Model growth: when and by how much to grow (the Stacking guidelines), and the speed-up of grown runs."""
