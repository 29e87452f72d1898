"""OpenAI's chat completions (and legacy completions) wire format; see :mod:`hybrid.wire`."""
