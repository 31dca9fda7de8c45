"""The scaling laws: Chinchilla, one-variable power laws, data-constrained, sigmoid accuracy, LR annealing, the
continual-pre-training law, and learning-rate schedules to predict along."""
