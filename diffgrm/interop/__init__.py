"""Networks trained elsewhere, decoded and explained by diffgrm.

- :func:`export_cornac` (run in a Cornac session) and :func:`import_cornac`: a model trained with
  Cornac's DiffGRM (``cornac.models.diffgrm``) as a diffgrm run;
- :func:`import_reference`: a checkpoint of the DiffGRM authors' reference code as a diffgrm run.

Both networks follow the released layout, diffgrm's model kind ``cornac-diffgrm``
(:mod:`diffgrm.interop.network`); the run they become is searched with diffgrm's CPD. Nothing is
unpickled: safetensors and JSON, ``torch.load(weights_only=True)`` and ``np.load(allow_pickle=False)``.
"""

from diffgrm.interop.cornac import export_cornac, import_cornac
from diffgrm.interop.network import KIND, ReleasedDiffGRM
from diffgrm.interop.reference import import_reference

__all__ = ["KIND", "ReleasedDiffGRM", "export_cornac", "import_cornac", "import_reference"]
