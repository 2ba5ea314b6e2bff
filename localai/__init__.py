"""localai: convert, run and measure local language models offline."""

__version__ = "0.1.0"

from localai.errors import LocalAIError
from localai.model import Model, load

__all__ = ["LocalAIError", "Model", "__version__", "load"]
