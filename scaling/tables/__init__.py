"""Results files in and out: CSV columns and JSON documents, the runs table, the OLMo ladder importer, loss curves
with their learning-rate schedules."""
