"""Process-tree dumps and the culprit rules (run by the supervisor and pytest)."""
