"""The fit engine: the law contract and fitted law, multi-start and batched minimisers, bootstrap, worker processes."""
