"""Backtests: fit small, predict large on real result sets; calibrated intervals and verdicts from them."""
