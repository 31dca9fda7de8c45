"""ladderlab: train small ladder models, fit scaling and mixing laws, predict large runs."""

from ladderlab.errors import LadderlabError

__all__ = ["LadderlabError", "predict_mixture", "critical_mixture_ratio"]
__version__ = "0.1.0"


# Mixture-ratio library calls (issue 4), imported on first use so `import ladderlab` stays light.
_LAZY = {"predict_mixture": "ladderlab.scaling.mixing.optimize", "critical_mixture_ratio": "ladderlab.scaling.mixing.cmr"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ladderlab' has no attribute {name!r}")
