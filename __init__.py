"""ladderlab: train small ladder models, fit scaling and mixing laws, predict large runs."""

from ladderlab.errors import LadderlabError

__all__ = ["LadderlabError", "predict_mixture", "critical_mixture_ratio", "LadderConfig", "load_config",
           "plan_ladder", "run_ladder", "report_ladder"]
__version__ = "0.1.0"


# The library calls, imported on first use so `import ladderlab` stays light: name -> (module, attribute).
# Mixture ratios (issue 4); the whole ladder loop from Python: config -> plan -> run (resumable) -> report.
_LAZY = {"predict_mixture": ("ladderlab.scaling.mixing.optimize", "predict_mixture"),
         "critical_mixture_ratio": ("ladderlab.scaling.mixing.cmr", "critical_mixture_ratio"),
         "LadderConfig": ("ladderlab.ladders.config", "LadderConfig"),
         "load_config": ("ladderlab.config", "load_config"),
         "plan_ladder": ("ladderlab.ladders.plan", "plan"),
         "run_ladder": ("ladderlab.ladders.runner", "run_ladder"),
         "report_ladder": ("ladderlab.ladders.report", "make_report")}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attribute = _LAZY[name]
        return getattr(importlib.import_module(module), attribute)
    raise AttributeError(f"module 'ladderlab' has no attribute {name!r}")
