"""What a fit is: the representation, where it starts, and its stages, as frozen dataclasses.

YAML only fills these (``meshfit.config.from_dict``); every value is checked here, so a bad
config fails before any data is read, with the key named (``stages[1].lr: must be a finite
number > 0; got nan``). Checks that need the data (view counts, image sizes) are in
``meshfit.fitting.recipes``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

from meshfit.config import ConfigError, from_dict
from meshfit.fitting.gauss_newton import check_gauss_newton
from meshfit.objectives import LossWeights
from meshfit.render.lighting import LIGHT_PARAMS

__all__ = ["APPEARANCE", "PARAMETERS", "FitConfig", "InitConfig", "Representation", "StageConfig"]

Representation = Literal["free_mesh", "blendshapes", "rigid"]

# The parameters each representation fits (``StageConfig.params`` picks among them).
# The appearance a stage that weighs the photometric term fits too (unless it names its params),
# per light model (FitConfig.light); ``gain`` only when the config asks for it.
APPEARANCE = {model: ("albedo", *light) for model, light in LIGHT_PARAMS.items()}
_APPEARANCE_PARAMS = ("albedo", *(k for light in LIGHT_PARAMS.values() for k in light), "gain", "background")
_POSE = ("rotation", "translation", "log_scale")
PARAMETERS: dict[str, tuple[str, ...]] = {
    "free_mesh": ("u", *_APPEARANCE_PARAMS),
    "rigid": (*_POSE, "texture", *_APPEARANCE_PARAMS),
    "blendshapes": ("identity", "expression", *_POSE, "texture", *_APPEARANCE_PARAMS),
}

# Bounds on what a config may ask for, so that a typo cannot ask for hours of work or gigabytes.
MAX_STEPS = 100_000
MAX_RESOLUTION = 8192
MIN_REMESH = 0.005  # radii: about 10^5 faces on a sphere
MAX_SPHERE_SUBDIVISIONS = 6  # 81,920 faces
MAX_HULL_RESOLUTION = 256
MAX_TEXTURE = 4096


def _finite(value: float, what: str, *, positive: bool = False, nonnegative: bool = False) -> None:
    if not math.isfinite(value) or (positive and value <= 0) or (nonnegative and value < 0):
        need = " > 0" if positive else (" >= 0" if nonnegative else "")
        raise ValueError(f"{what} must be a finite number{need}; got {value}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class StageConfig:
    """One optimisation stage.

    name: label for progress and the report. steps: step budget.
    lr: learning rate, in object radii for positions (translation, free-mesh u: the step is
        scaled by the object's radius, so configs do not depend on units), radians for
        rotations, plain for coefficients.
    lr_decay: the last step's learning rate as a fraction of ``lr`` (cosine from ``lr``; 1 =
        constant): a final stage that settles instead of jittering at its step size.
    lr_warmup: steps over which the learning rate rises linearly to ``lr`` (0 = none). A stage
        starts Adam afresh, whose first steps move every parameter by about ``lr`` whatever its
        gradient: a stage that starts near the answer (a last refinement, one that frees a new
        parameter such as an albedo) is kicked off it, and its early stop may end it before it
        gets back (keeping its start). A stage shorter than its warm-up never reaches ``lr``.
    lr_scale: per-parameter factors on ``lr`` (e.g. ``{rotation: 0.2}``).
    optimizer: "adam", "adam_uniform" (Nicolet et al.; for free meshes), "sgd", or
        "gauss_newton" (Levenberg–Marquardt for rigid and blendshape fits, close to the answer:
        a step is a damped Gauss–Newton solve over all the parameters, and steps about 10 do
        what hundreds of Adam steps do; it weighs only the depth, landmark and prior terms and
        ignores lr; ``meshfit.fitting.gauss_newton``).
    resolution: longest image side for this stage (targets area-averaged; None = the data's;
        a value above the data's is lowered to it, with a note in the log and metrics.json).
    weights: the objective's ``LossWeights``. A stage that gives ``weights`` names the terms it
        wants; terms it leaves out are 0 (without ``weights``: silhouette 1). The depth term is
        measured in object radii (its weight is divided by radius^2).
    depth_max_error: depth errors beyond this (object radii) are truncated: no pull from pixels
        that are far off (``losses.depth_loss``); None = plain quadratic.
    landmark_scale: the landmark term's robust (Cauchy) scale in the data's pixels: a detection
        this far off counts log 2, a far outlier little more (``losses.landmark_loss``);
        None = squared error in pixels^2.
    photometric_scale: the photometric term's robust scale in display colour (0-1): an error
        beyond it counts logarithmically (``losses.photometric_loss``), so that what the
        appearance model cannot produce (eyelashes over a uniform skin albedo) does not pull
        the shape; None = Charbonnier throughout (with an SH light and neither masks nor
        plates, only None takes the fused native shading kernel).
    params: parameters optimised (rigid/blendshapes: any of rotation, translation, log_scale,
        identity, expression); empty = the representation's default set.
    remesh: free mesh only: before the stage, remesh to this target edge length, as a fraction
        of the object's radius (None = keep the mesh).
    lam: free mesh only: large-steps lambda for this stage.
    views_per_step: render a random subset of this many views per step (stochastic; None = all).
    patience, min_improvement: early stop (``meshfit.fitting.run_stage``); patience 0 = never.
    """

    name: str = "stage"
    steps: int = 200
    lr: float = 0.01
    lr_decay: float = 1.0
    lr_warmup: int = 0
    lr_scale: dict[str, float] = dataclasses.field(default_factory=dict)
    optimizer: Literal["adam", "adam_uniform", "sgd", "gauss_newton"] = "adam"
    resolution: int | None = None
    weights: LossWeights = LossWeights(silhouette=1.0)
    depth_max_error: float | None = 0.1
    landmark_scale: float | None = 2.0
    photometric_scale: float | None = None
    params: tuple[str, ...] = ()
    remesh: float | None = None
    lam: float = 19.0
    views_per_step: int | None = None
    patience: int = 50
    min_improvement: float = 1e-4

    def __post_init__(self):
        if not 0 <= self.steps <= MAX_STEPS:
            raise ValueError(f"steps must be in 0..{MAX_STEPS}; got {self.steps}")
        _finite(self.lr, "lr", positive=True)
        if not (math.isfinite(self.lr_decay) and 0 < self.lr_decay <= 1):
            raise ValueError(
                f"lr_decay is the last step's lr as a fraction of lr, in (0, 1]; got {self.lr_decay}"
            )
        if self.lr_warmup < 0:
            raise ValueError(f"lr_warmup is a number of steps (>= 0); got {self.lr_warmup}")
        for k, v in self.lr_scale.items():
            _finite(v, f"lr_scale.{k}", positive=True)
        if self.resolution is not None and not 8 <= self.resolution <= MAX_RESOLUTION:
            raise ValueError(f"resolution must be in 8..{MAX_RESOLUTION} pixels; got {self.resolution}")
        if not any(getattr(self.weights, f.name) for f in dataclasses.fields(LossWeights)):
            raise ValueError("weights: every term is 0, so there is nothing to fit; name at least one term")
        if self.depth_max_error is not None:
            _finite(self.depth_max_error, "depth_max_error", positive=True)
        if self.landmark_scale is not None:
            _finite(self.landmark_scale, "landmark_scale", positive=True)
        if self.photometric_scale is not None:
            _finite(self.photometric_scale, "photometric_scale", positive=True)
            if not self.weights.photometric:
                raise ValueError(
                    "photometric_scale: this stage does not weigh the photometric term; give it a weight "
                    "(weights.photometric) or drop the scale"
                )
        if self.views_per_step is not None and self.views_per_step < 1:
            raise ValueError(f"views_per_step must be >= 1; got {self.views_per_step}")
        if self.remesh is not None:
            _finite(self.remesh, "remesh", positive=True)
            if self.remesh < MIN_REMESH:
                raise ValueError(
                    f"remesh must be >= {MIN_REMESH} radii (about 10^5 faces); got {self.remesh}"
                )
        _finite(self.lam, "lam", nonnegative=True)
        if self.patience < 0:
            raise ValueError(f"patience must be >= 0; got {self.patience}")
        _finite(self.min_improvement, "min_improvement", nonnegative=True)
        if len(set(self.params)) != len(self.params):
            raise ValueError(f"params lists a parameter twice: {list(self.params)}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class InitConfig:
    """Where a fit starts.

    rotation: axis-angle in degrees (rigid, blendshapes), object -> world.
    translation: world position of the object's centre (its bounding-box centre); None = the
        centre estimated from the masks.
    scale: initial scale (rigid, blendshapes).
    rotation_search: rigid only: also try this many random rotations, refine the 8 whose
        silhouettes match best for a few steps of the first stage, and start from the best of
        those (0 = trust ``rotation``).
    shape: free mesh without an initial mesh: "sphere" (an icosphere placed from the masks) or
        "visual_hull" (the masks' visual hull: the right genus when the silhouettes show it).
    sphere_subdivisions: the icosphere's level (3 = 1280 faces; at most 6).
    sphere_radius: its radius as a fraction of the radius estimated from the masks.
    hull_resolution: visual hull voxels per side (at most 256); hull_edge: its remeshed edge
        length (radii).
    """

    rotation: tuple[float, float, float] = (0.0, 0.0, 0.0)
    translation: tuple[float, float, float] | None = None
    scale: float = 1.0
    rotation_search: int = 0
    shape: Literal["sphere", "visual_hull"] = "sphere"
    sphere_subdivisions: int = 3
    sphere_radius: float = 0.8
    hull_resolution: int = 64
    hull_edge: float = 0.08

    def __post_init__(self):
        for i, r in enumerate(self.rotation):
            _finite(r, f"rotation[{i}]")
        for i, t in enumerate(self.translation or ()):
            _finite(t, f"translation[{i}]")
        _finite(self.scale, "scale", positive=True)
        if not 0 <= self.rotation_search <= 4096:
            raise ValueError(f"rotation_search must be in 0..4096; got {self.rotation_search}")
        if not 0 <= self.sphere_subdivisions <= MAX_SPHERE_SUBDIVISIONS:
            raise ValueError(
                f"sphere_subdivisions must be in 0..{MAX_SPHERE_SUBDIVISIONS} "
                f"({20 * 4**MAX_SPHERE_SUBDIVISIONS} faces); got {self.sphere_subdivisions}"
            )
        _finite(self.sphere_radius, "sphere_radius", positive=True)
        if not 8 <= self.hull_resolution <= MAX_HULL_RESOLUTION:
            raise ValueError(
                f"hull_resolution must be in 8..{MAX_HULL_RESOLUTION}; got {self.hull_resolution}"
            )
        _finite(self.hull_edge, "hull_edge", positive=True)
        if self.hull_edge < MIN_REMESH:
            raise ValueError(f"hull_edge must be >= {MIN_REMESH} radii; got {self.hull_edge}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class FitConfig:
    """A whole fit: representation, start, stages, the clip range (None = from the data), and
    ``bounds``: box constraints on blendshape coefficients, ``{expression: [0, 1]}``, enforced by
    projecting after every step. ``smoothness``: for a sequence (multi-frame data), the weight of
    the mean squared frame-to-frame change of expression and pose. ``light``: the light a
    photometric fit fits: "sh" (order-2 spherical harmonics per colour channel: any distant
    light) or "directional" (one directional light and ambient, per channel: a studio's key light,
    and exactly what ``meshfit synth`` renders). ``gain``: also fit a linear colour gain per
    camera (white balance and exposure: real rigs are never colour-matched), normalised to mean 1
    over the cameras so that it does not trade against the light. ``albedo_start``: where the
    albedo starts in the first stage that weighs the photometric term: "views" (each vertex's
    colour in the views that see it, divided by the light; the shape's first steps then do not
    bend it to explain a wrong albedo), "grey" (uniform; when a strong albedo prior would
    first have to undo the shading the views bake in) or, for a rigid fit, "model" (the known
    mesh's vertex colours, linear: its appearance is known, so a stage that fits the pose and
    the light, not the albedo, tracks it by colour where its silhouette is ambiguous).
    ``plates``: when the dataset has background plates, the photometric term compares whole
    images, the render laid over them
    (false: only the surface's interior pixels, for a model that covers part of what the
    cameras see, such as a face region without its hair and neck; "key": a dataset without
    masks gets them from where the views differ from their plates, as ``meshfit import
    --plates`` keys them, and is then fitted as one with masks: silhouettes and the interior
    pixels).
    ``appearance``: what the albedo is: "vertex" (per-vertex colour, written as the mesh's vertex
    colours) or, for a rigid fit of a mesh with texture coordinates or a blendshape model with
    them (its neutral's), "texture" (a UV texture
    map ``texture_size`` texels square, sampled trilinearly from its mip pyramid, written as
    mesh.png beside mesh.obj; its smoothness priors act between neighbouring texels). The
    texture's albedo starts as ``albedo_start`` says ("model": the mesh's own texture).
    ``background_colour``: one frame in front of a uniform backdrop, without plates: fit its
    colour per camera ([N, 3] display colour, started at the median of each view's border
    pixels) and compare whole images as with plates, the render laid over it; without masks the
    object is placed, and its hull carved, from where the views differ from that colour."""

    model: Representation
    stages: tuple[StageConfig, ...]
    init: InitConfig = InitConfig()
    seed: int = 0
    near: float | None = None
    far: float | None = None
    bounds: dict[str, tuple[float, float]] = dataclasses.field(default_factory=dict)
    smoothness: float = 0.0
    light: Literal["sh", "directional"] = "sh"
    gain: bool = False
    albedo_start: Literal["views", "grey", "model"] = "views"
    plates: bool | Literal["key"] = True
    appearance: Literal["vertex", "texture"] = "vertex"
    texture_size: int = 512
    background_colour: bool = False

    def __post_init__(self):
        if not self.stages:
            raise ValueError("stages: at least one stage is needed")
        allowed = set(PARAMETERS[self.model])
        for i, s in enumerate(self.stages):
            for key, names in (("params", s.params), ("lr_scale", s.lr_scale)):
                bad = sorted(set(names) - allowed)
                if bad:
                    raise ValueError(
                        f"stages[{i}].{key}: {bad} are not parameters of a {self.model} fit; "
                        f"expected some of {sorted(allowed)}"
                    )
            if self.model != "free_mesh" and s.remesh is not None:
                raise ValueError(f"stages[{i}].remesh: only a free_mesh fit can remesh")
            if self.model != "free_mesh" and s.optimizer == "adam_uniform":
                raise ValueError(f"stages[{i}].optimizer: adam_uniform is for free meshes; use adam")
            if s.optimizer == "gauss_newton":
                if self.model == "free_mesh":
                    raise ValueError(
                        f"stages[{i}].optimizer: gauss_newton solves for the few parameters of a rigid "
                        "or blendshape fit; a free mesh's vertices are thousands (use adam_uniform)"
                    )
                check_gauss_newton(s.weights, s.params, f"stages[{i}]")
        if self.appearance == "texture" and self.model == "free_mesh":
            raise ValueError(
                "appearance: texture needs texture coordinates: a rigid fit's known mesh or a blendshape "
                "model has them; a free_mesh fit's surface has none (use appearance: vertex)"
            )
        if not 8 <= self.texture_size <= MAX_TEXTURE:
            raise ValueError(f"texture_size must be in 8..{MAX_TEXTURE} texels; got {self.texture_size}")
        wrong, right = ("albedo", "texture") if self.appearance == "texture" else ("texture", "albedo")
        for i, s in enumerate(self.stages):
            if wrong in s.params or wrong in s.lr_scale:
                raise ValueError(
                    f"stages[{i}]: '{wrong}' is not fitted with appearance: {self.appearance} (its albedo "
                    f"is '{right}')"
                )
        if self.albedo_start == "model" and self.model != "rigid":
            raise ValueError("albedo_start: model (the known mesh's colours) is for rigid fits")
        if self.background_colour and not any(s.weights.photometric for s in self.stages):
            raise ValueError(
                "background_colour: the backdrop's colour is fitted by the photometric term; no stage has it"
            )
        if self.gain and not any(s.weights.photometric for s in self.stages):
            raise ValueError("gain: the per-camera gains are fitted by the photometric term; no stage has it")
        if self.init.rotation_search and self.model != "rigid":
            raise ValueError(
                f"init.rotation_search: only a rigid fit searches rotations, not a {self.model} fit"
            )
        if self.model == "free_mesh" and (self.init.rotation != (0.0, 0.0, 0.0) or self.init.scale != 1.0):
            raise ValueError("init.rotation and init.scale apply to rigid and blendshape fits, not free_mesh")
        for name, (lo, hi) in self.bounds.items():
            if name not in ("identity", "expression") or self.model != "blendshapes":
                raise ValueError(
                    f"bounds.{name}: only blendshape identity and expression coefficients take bounds"
                )
            if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
                raise ValueError(f"bounds.{name}: expected [low, high] with low < high; got [{lo}, {hi}]")
        for name, value in (("near", self.near), ("far", self.far)):
            if value is not None:
                _finite(value, name, positive=True)
        if self.near is not None and self.far is not None and not self.near < self.far:
            raise ValueError(f"near must be < far; got near={self.near}, far={self.far}")
        _finite(self.smoothness, "smoothness", nonnegative=True)
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0; got {self.seed}")

    @classmethod
    def from_dict(cls, data: dict) -> FitConfig:
        """Validate plain data (parsed YAML); errors name the key path."""
        return from_dict(cls, data)

    @classmethod
    def load(cls, path) -> FitConfig:
        """Read and validate a YAML config file."""
        from meshfit.config import load_yaml

        try:
            return cls.from_dict(load_yaml(path))
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from e
