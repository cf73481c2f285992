"""meshfit: differentiable mesh fitting in JAX."""

from meshfit import capture, config, fitting, io, losses, metrics, models, objectives, optim, render, synth
from meshfit.camera import Camera, CameraError, clip_range
from meshfit.capture import import_capture
from meshfit.fitting import FitConfig, fit_views
from meshfit.io import (
    CameraSet,
    MeshIOError,
    Views,
    load_cameras,
    load_mesh,
    load_sequence,
    load_views,
    read_image,
    save_cameras,
    save_mesh,
    write_image,
)
from meshfit.mesh import (
    Mesh,
    MeshError,
    MeshWarning,
    SurfaceSample,
    bounding_sphere,
    face_areas,
    face_normals,
    sample_surface,
    triangulate,
    vertex_normals,
)
from meshfit.rigs import look_at, orbit_rig, sphere_rig, triangulate_points
from meshfit.synth import synthesize
from meshfit.topology import LaplacianOp, Topology, cotangent_laplacian, uniform_laplacian

__version__ = "0.1.0"


def __getattr__(name: str):
    # meshfit.amortize pulls in Flax and orbax (and meshfit.export, amortize): imported on first
    # use, not by every command.
    if name in ("amortize", "export"):
        import importlib

        return importlib.import_module(f"meshfit.{name}")
    raise AttributeError(f"module 'meshfit' has no attribute {name!r}")


__all__ = [
    "Camera",
    "CameraError",
    "CameraSet",
    "FitConfig",
    "LaplacianOp",
    "Mesh",
    "MeshError",
    "MeshIOError",
    "MeshWarning",
    "SurfaceSample",
    "Topology",
    "Views",
    "amortize",
    "bounding_sphere",
    "capture",
    "clip_range",
    "config",
    "cotangent_laplacian",
    "export",
    "face_areas",
    "face_normals",
    "fit_views",
    "fitting",
    "import_capture",
    "io",
    "load_cameras",
    "load_mesh",
    "load_sequence",
    "load_views",
    "look_at",
    "losses",
    "metrics",
    "models",
    "objectives",
    "optim",
    "orbit_rig",
    "read_image",
    "render",
    "sample_surface",
    "save_cameras",
    "save_mesh",
    "sphere_rig",
    "synth",
    "synthesize",
    "triangulate",
    "triangulate_points",
    "uniform_laplacian",
    "vertex_normals",
    "write_image",
]
