"""Model growth: the operators (G_stack and the others) in depth and in width, on the decoder's parameters."""
