"""realism."""
