"""secsplit.evaluation."""
