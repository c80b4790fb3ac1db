"""A run's configuration: the settings resolved once from the flags, the shared flag groups, the synthesis flag checks."""
