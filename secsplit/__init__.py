"""secsplit: privacy-focused split learning.

Train a network split across parties, attack what crosses the cut, and measure the leakage.
"""

__version__ = "0.1.0"
