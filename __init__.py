"""ladderlab: train small ladder models, fit scaling and mixing laws, predict large runs."""

from ladderlab.errors import LadderlabError

__all__ = ["LadderlabError"]
__version__ = "0.1.0"
