"""What happens to a request once it is parsed: decide, answer, account, announce, learn.

The HTTP server (:mod:`hybrid.api`), the CLI and the benchmarks build these parts the same way,
through :mod:`hybrid.service.build`; the server only translates HTTP to and from them.

```
build.py        build_service(settings): the whole service; build_dispatcher(...): its
                decision part alone (hybrid route); build_learner(...)
service.py      Service: the parts, started and closed as one (ledger, sampler, model load,
                hardware events, background calibration)
answering.py    start_answer: decide and start an answer, accounted for and learnt from
accounting.py   Accountant: one ledger record per request, with its events and metrics
recorded.py     Ticket and RecordedGeneration: a record in the making, written as it ends
events.py       EventBus: the live event stream; hardware_event
metrics.py      Metrics: the Prometheus metrics
learning.py     Learner: learning signals and shadow comparisons
providers.py    build_providers: the cloud providers, each with its own HTTP client
```

Nothing here imports :mod:`hybrid.api`, :mod:`hybrid.cli` or :mod:`hybrid.monitor`.
"""
