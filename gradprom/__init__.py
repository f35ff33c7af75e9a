"""gradprom: task-driven medical image enhancement experiments with gradient strategies, searched on Ray."""

__version__ = "0.1.0"

# Bumped whenever a results column changes meaning or is removed; readers check it.
SCHEMA_VERSION = 1
