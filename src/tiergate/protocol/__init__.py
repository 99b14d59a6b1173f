"""What crosses process boundaries: events, findings, the run spec, redaction."""
