"""`tiergate run`: the supervisor process and what it controls."""
