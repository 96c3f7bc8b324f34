"""secsplit.defenses."""
