"""The fitted representations, each a pytree with ``init_params()`` and ``vertices(params)``."""

from meshfit.models.blendshapes import BlendshapeModel
from meshfit.models.free_mesh import FreeMeshModel
from meshfit.models.rigid import RigidModel
from meshfit.models.rotation import so3_exp, so3_log

__all__ = ["BlendshapeModel", "FreeMeshModel", "RigidModel", "so3_exp", "so3_log"]
