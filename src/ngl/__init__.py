"""ngl: the Next Generation Loss (arXiv 2404.12948), its baselines, the GP search that finds such
losses, and the paper's evaluation protocol.

>>> import ngl
>>> criterion = ngl.get_loss("ngl")
"""
from . import expr
from .losses import from_expression, get_loss, list_losses, ngl_loss

__version__ = "0.1.0"
__all__ = ["expr", "get_loss", "list_losses", "ngl_loss", "from_expression", "__version__"]
