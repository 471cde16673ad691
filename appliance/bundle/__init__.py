"""Offline bundles: make one on a connected machine, check it, install it on an air-gapped box.

Only the standard library at import: scripts/install runs this package with the box's python3.
"""
