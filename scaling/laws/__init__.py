"""The scaling laws: Chinchilla, one-variable power laws, data-constrained, sigmoid accuracy, LR annealing."""
