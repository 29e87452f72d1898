"""Cloud providers: the backends that answer over HTTP (OpenAI, Anthropic, OpenAI-compatible).

```
policy.py               ReliabilityPolicy: timeouts, retries, circuit breaker thresholds
client.py               cloud_client: the httpx2.AsyncClient each provider gets (pool, timeouts,
                        HTTP/2 with h2, the environment's proxies and CA bundle)
breaker.py              CircuitBreaker: closed -> open -> half-open, one provider each
retry.py                why an attempt failed (by status or transport), Retry-After, backoff
provider.py             CloudProvider: retries before the first byte, then streams events
upstream.py             Upstream: one attempt's HTTP exchange (the request, a send again on
                        a fresh connection when a pooled one was closed, a bounded body)
stream.py               StreamGeneration: a streamed answer after its first event (stalls,
                        draining the connection for reuse, the breaker's verdict)
openai_provider.py      OpenAIProvider: OpenAI and every OpenAI-compatible API
anthropic_provider.py   AnthropicProvider: the Messages API
```

The wire formats (request bodies, answers, streams, tool calls) are :mod:`hybrid.wire`'s.
A provider takes everything through its constructor (its name, base URL, key, models, an
``httpx2.AsyncClient`` and a :class:`~hybrid.cloud.policy.ReliabilityPolicy`); reading settings,
choosing between providers and falling back to the local model happen elsewhere.  Keys are
``SecretStr`` and are revealed only while building the request header for their own host.
"""
