"""Procedural campus worlds rendered into the University-1652 layout with ground truth."""
