"""Pieces every emulated service shares: routing, errors, ARM conventions and long-running operations."""
