"""gradprom: task-driven medical image enhancement experiments with gradient strategies, searched on Ray."""

__version__ = "0.1.0"

# Bumped whenever a results column changes meaning or is removed; readers check it.
# 2: with gate_on=head, cos_* is NaN and the head's cosine is head_cos_*; *_ref_clean / *_ref_input added.
SCHEMA_VERSION = 2
