"""Torch-free analysis mathematics: interval arithmetic and convexity composition."""
