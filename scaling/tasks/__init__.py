"""Task scaling laws: a big model's benchmark accuracy from a ladder (two chained steps), their reports and plots."""
