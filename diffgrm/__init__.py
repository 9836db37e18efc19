"""diffgrm: diffusion-based generative recommendation (DiffGRM) you can run, see and trust."""

from diffgrm.errors import DiffGRMError

__version__ = "0.1.0"

__all__ = ["DiffGRMError", "__version__"]
