"""secsplit.attacks."""
