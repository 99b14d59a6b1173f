"""Configuration: tiers from [tool.tiergate], validated once. Every process."""
