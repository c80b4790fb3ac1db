"""The process around a run: distributed set-up and the device, Ctrl-C / SIGTERM, the CLI error path, timing."""
