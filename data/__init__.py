"""grain input pipelines: sources, tokenizers, packing, domain mixtures, demo corpus."""
