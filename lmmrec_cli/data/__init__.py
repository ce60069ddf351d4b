"""Data preparation: raw review dumps → versioned dataset artifacts (see dataset.py)."""
