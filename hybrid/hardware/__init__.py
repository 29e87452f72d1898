"""What this machine can run: the hardware probe, the runtime plan and the live sampler.

``snapshot``   frozen dataclasses: what the probe saw (``HardwareSnapshot``, ``LiveSample``)
``cpu``        CPU model, cores, SIMD features and load (psutil, /proc/cpuinfo, sysctl)
``memory``     RAM, swap and the container (cgroup v1/v2) memory limit
``gpu``        NVIDIA through NVML, AMD through sysfs, Apple Silicon unified memory
``power``      battery level and AC/battery
``bandwidth``  a short memory-bandwidth benchmark and its on-disk cache
``probe``      ``HardwareProbe``: puts the sources together into a snapshot or a live sample
``plan``       ``plan_for``: threads, GPU layers, context size and predicted speed for a model
``sampler``    ``LiveSampler``: a ~1 Hz background reader others query without blocking
``render``     the text and JSON reports of ``hybrid probe``

Nothing here imports llama_cpp at import time; the GPU-offload check imports it lazily.
"""

from __future__ import annotations
