"""Anthropic's Messages wire format; see :mod:`hybrid.wire`."""
