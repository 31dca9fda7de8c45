"""Shipped gin and python configs."""
