"""Helpers shared by several test modules (data roots, stand-in networks, file writers)."""
