"""Batches: files, intake (validation), the runner that runs each line once, and the result files."""
