"""Calibrating the difficulty model on the installed local model.

``hybrid calibrate`` and ``scripts/eval_router.py`` share this harness:

- :mod:`.items` generates the calibration set (nine categories of auto-gradable prompts,
  deterministic for a seed) and splits it, stratified by category; :mod:`.item` defines an item
  and its expected answer; :mod:`.items_numeric`, :mod:`.items_verbal` and :mod:`.facts` hold
  the generators and their hand-written fact tables;
- :mod:`.runner` asks a backend every item (greedy, fixed seed) and :mod:`.grading` grades the
  answers, fairly to a terse model; :mod:`.record` keeps the answers for reuse;
- :mod:`.fitting` fits the difficulty model on the training split (penalty and threshold by
  cross-validation) and measures it on the held-out split, beside the length rule;
  :mod:`.metrics` computes AUROC and RouteLLM's APGR and CPT;
- :mod:`.acceptance` decides whether a fit may replace the calibration in use.

Nothing here runs when serving; the router only loads the fitted model
(:mod:`hybrid.routing.difficulty.store`).
"""
