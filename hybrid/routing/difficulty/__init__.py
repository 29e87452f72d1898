"""The difficulty model: how likely the local model is to answer a prompt unacceptably.

A light logistic model over prompt features (:mod:`.features`: lengths, code and math markers,
reasoning cues, vocabulary, script, instructions, hashed word n-grams) gives a score in [0, 1],
the estimated probability that the local model's answer would be wrong.  No LLM call, no
network; scoring takes tens of microseconds.  The weights are fitted per local model by
``hybrid calibrate`` (see :mod:`hybrid.routing.calibration`) and stored under the GGUF file's
SHA-256; the package ships them for the embedded model.

Typical use by a routing policy::

    from hybrid.routing.difficulty.store import gguf_sha256, load_for

    model = load_for(settings.home, gguf_sha256(path))   # None: never calibrated
    score = model.score(messages)
    if model.escalates(score, settings.routing.difficulty.threshold):  # None: calibrated default
        ...

Modules: :mod:`.features` (the feature vector), :mod:`.model` (scoring, fitting, the default
threshold, JSON), :mod:`.store` (where fitted models live).
"""
