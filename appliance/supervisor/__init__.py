"""Worker processes: start, watch, restart, evict; one process per model."""
