"""How segments talk: messages, the in-process channel, byte accounting and taps."""

from secsplit.channel.accounting import TrafficCounter
from secsplit.channel.inprocess import EAVESDROPPER, Channel
from secsplit.channel.message import KINDS, Message

__all__ = ["Channel", "EAVESDROPPER", "KINDS", "Message", "TrafficCounter"]
