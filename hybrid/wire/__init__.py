"""The API formats hybrid speaks, one package each, and the server-sent events they share.

Each format changes as one unit: its request schema, the decoding of what clients send, the
encoding of hybrid's answers to them, the encoding of what providers get and the reading of what
they answer, tool calls included.  Pure translation, no I/O: :mod:`hybrid.api` (the server) and
:mod:`hybrid.cloud` (the providers) are the glue around it.

```
fields.py             what both formats' requests share: tool schemas, 64-bit integers, stops
sse.py                the one SSE encoder (events, comments), the parser, StreamDecoder
errors.py             hybrid's errors as each API's error body, status and headers
openai/               OpenAI's chat completions and legacy completions
  schema.py           the request bodies clients send, as pydantic models
  decode.py           client request -> GenerationRequest
  respond.py          hybrid's answer -> chat.completion / text_completion objects and chunks
  encode.py           GenerationRequest -> a provider's request body (OpenAI or compatible)
  read.py             a provider's answer or stream -> generation events
  tools.py            tools and tool calls, both ways
anthropic/            Anthropic's Messages API, with the same modules
```

Nothing here imports :mod:`hybrid.api`, :mod:`hybrid.cloud`, :mod:`hybrid.routing` or
:mod:`hybrid.monitor`; the monitor reads the admin event feed with :mod:`hybrid.wire.sse`.
"""
