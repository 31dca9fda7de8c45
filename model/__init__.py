"""Flax NNX decoder, parameter and FLOP counting, sharding rules, growth operators."""
