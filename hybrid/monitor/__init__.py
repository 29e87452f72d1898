"""``hybrid monitor``: a live terminal dashboard of a running ``hybrid serve``.

```
wire.py       the admin API's bodies (docs/events.md) as frozen dataclasses; their parsers
client.py     DaemonClient: events (SSE), stats, set_mode over httpx2; DaemonUnreachable
link.py       DaemonLink (what the app needs), Backoff, follow(): reconnects by itself
state.py      DashboardState: folds events into a Dashboard (no Textual, clock passed in)
format.py     money, counts, sizes, durations, gauges, written the same everywhere
messages.py   the Textual messages between the parts
app.py        MonitorApp; widgets/ one widget per module; screens/ the modal screens
monitor.tcss  the layout
```

The monitor talks to the daemon over HTTP only: it imports neither the server (hybrid.api,
fastapi, uvicorn) nor the local model (hybrid.local, llama_cpp); tests/monitor proves it.
"""
