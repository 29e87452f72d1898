"""The monitor's widgets, one per module.

```
status_line.py     StatusLine: connection, daemon URL, routing mode, clock
offline_banner.py  OfflineBanner: why the daemon cannot be reached and how to start it
calibration.py     CalibrationLine: routing on a prior, background calibration's progress
savings.py         SavingsPanel: cost avoided (large), cloud spend against the budget, local share
trend.py           Trend: one labelled sparkline with its latest value
charts.py          ChartsPanel: requests per minute, latency, decode speed
hardware.py        HardwarePanel: CPU, RAM, GPU, power, queue, the loaded model
request_log.py     RequestLog: finished requests, newest first, filterable, pausable
```

Each widget shows a :class:`~hybrid.monitor.state.Dashboard` (or part of one) through a
reactive attribute bound to the app's, and never talks to the daemon.
"""
