"""Data mixtures: mixing laws, the cross-validated mixing model, optimal mixtures, designs, nested pipeline, CMR."""
