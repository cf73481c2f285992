"""What an amortized training is, as frozen dataclasses (YAML only fills them, like fit configs).

A ``TrainConfig`` names the representation (a blendshape rig or a rigid pose of a known mesh), how
training samples are drawn (coefficients, pose about the rig's centre, rig jitter, appearance,
noise, occluders), the network's size, the losses, the optimiser, checkpoints and the
validation set. Every value is checked here, so a typo fails before anything is rendered, with
the key named (``sampling.rotation: must be in 0..180 degrees; got 720``).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

from meshfit.config import ConfigError, from_dict
from meshfit.fitting.config import MAX_STEPS, StageConfig, _finite
from meshfit.fitting.gauss_newton import check_gauss_newton
from meshfit.objectives import LossWeights

__all__ = [
    "AppearanceConfig",
    "CHANNELS",
    "CheckpointConfig",
    "LossConfig",
    "NetworkConfig",
    "OptimConfig",
    "RigJitter",
    "SamplingConfig",
    "TrainConfig",
    "ValidationConfig",
]

# Image channels a network may read (rays are always added: they tell it which camera it looks through).
CHANNELS = ("mask", "grey", "depth")

MAX_BATCH = 4096
MAX_INPUT_RESOLUTION = 512


def _range(value: tuple[float, float], what: str, *, lo: float = -math.inf, hi: float = math.inf) -> None:
    a, b = value
    if not (math.isfinite(a) and math.isfinite(b) and a <= b):
        raise ValueError(f"{what}: expected [low, high] with low <= high; got [{a}, {b}]")
    if a < lo or b > hi:
        raise ValueError(f"{what}: must lie in [{lo}, {hi}]; got [{a}, {b}]")


@dataclasses.dataclass(frozen=True, kw_only=True)
class SamplingConfig:
    """How a training sample's parameters are drawn.

    identity, expression: uniform ranges of the blendshape coefficients; ``ranges`` overrides
        them per coefficient by name (``{jawOpen: [0, 0.6]}``).
    expression_active: the probability that an expression coefficient is non-zero (1 = all
        active; 0.3 = sparse expressions, as in speech).
    rotation: largest rotation away from the model's rest orientation, degrees (axis uniform,
        the rotation uniform in the ball of that angle; 180 = any orientation).
    translation: half-width of the box the object's centre is drawn in about the rig's centre,
        in object radii.
    scale: uniform range of the object's scale (1 = the model's size).
    """

    identity: tuple[float, float] = (-1.0, 1.0)
    expression: tuple[float, float] = (0.0, 1.0)
    ranges: dict[str, tuple[float, float]] = dataclasses.field(default_factory=dict)
    expression_active: float = 1.0
    rotation: float = 15.0
    translation: float = 0.1
    scale: tuple[float, float] = (1.0, 1.0)

    def __post_init__(self):
        _range(self.identity, "identity")
        _range(self.expression, "expression")
        for k, r in self.ranges.items():
            _range(r, f"ranges.{k}")
        if not 0 <= self.expression_active <= 1:
            raise ValueError(f"expression_active must be in [0, 1]; got {self.expression_active}")
        if not 0 <= self.rotation <= 180:
            raise ValueError(f"rotation must be in 0..180 degrees; got {self.rotation}")
        _finite(self.translation, "translation", nonnegative=True)
        _range(self.scale, "scale", lo=1e-3)


@dataclasses.dataclass(frozen=True, kw_only=True)
class RigJitter:
    """Random changes of the rig per sample, so a network survives recalibration: rotation
    (degrees), camera position (object radii), focal length (relative), principal point
    (fraction of the image size)."""

    rotation: float = 0.5
    translation: float = 0.02
    focal: float = 0.01
    principal: float = 0.005

    def __post_init__(self):
        for f in dataclasses.fields(self):
            _finite(getattr(self, f.name), f.name, nonnegative=True)
        if self.rotation > 30 or self.focal > 0.5 or self.principal > 0.25:
            raise ValueError(
                "jitter is for calibration noise: rotation <= 30 degrees, focal <= 0.5, principal <= 0.25"
            )


@dataclasses.dataclass(frozen=True, kw_only=True)
class AppearanceConfig:
    """How the rendered inputs vary.

    albedo: uniform range of the (grey) albedo. ambient: range of the ambient light. studio:
        probability of ``meshfit synth``'s own light (else a random direction from the cameras'
        side). sh: of the other samples, the fraction lit instead by a random order-2
        spherical-harmonic light (an environment: a constant part, a dominant direction from the
        cameras' side and random second-order terms; what a photometric fit fits). background:
        range of the (grey) background level, with a random linear gradient of up to
        ``background_gradient``. noise: std of Gaussian noise on grey images.
    depth_noise: std of depth noise, object radii. mask_noise: probability that a mask pixel on
        the silhouette's border flips (a ragged real mask).
    occluders: expected number of occluding rectangles per view (each up to ``occluder_size``
        of the image side; each hides the object in the mask or shows as foreground, at random).
    landmark_noise: std of the noise on the landmarks of rendered samples (``loss.landmarks``),
        pixels of the network's input; landmark_outliers: the probability that a landmark is a
        detector's mistake instead (anywhere in the image).
    """

    albedo: tuple[float, float] = (0.4, 0.9)
    ambient: tuple[float, float] = (0.1, 0.5)
    studio: float = 0.3
    sh: float = 0.0
    background: tuple[float, float] = (0.0, 0.6)
    background_gradient: float = 0.2
    noise: float = 0.02
    depth_noise: float = 0.005
    mask_noise: float = 0.1
    occluders: float = 0.3
    occluder_size: float = 0.3
    landmark_noise: float = 0.25
    landmark_outliers: float = 0.02

    def __post_init__(self):
        _range(self.albedo, "albedo", lo=0.0, hi=1.0)
        _range(self.ambient, "ambient", lo=0.0, hi=2.0)
        _range(self.background, "background", lo=0.0, hi=1.0)
        for name in ("studio", "sh", "mask_noise", "landmark_outliers"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be a probability in [0, 1]; got {getattr(self, name)}")
        for name in ("background_gradient", "noise", "depth_noise", "landmark_noise"):
            _finite(getattr(self, name), name, nonnegative=True)
        if not 0 <= self.occluders <= 8:
            raise ValueError(f"occluders must be in 0..8 per view; got {self.occluders}")
        if not 0 < self.occluder_size <= 1:
            raise ValueError(f"occluder_size must be in (0, 1]; got {self.occluder_size}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class NetworkConfig:
    """The regressor's size: ``stages`` stride-2 conv stages of ``width``·2^s channels (each a
    strided 3x3 conv and ``convs_per_stage`` - 1 more 3x3 convs), then ``features``-wide dense
    layers per view and after pooling over views."""

    width: int = 16
    stages: int = 4
    convs_per_stage: int = 2
    features: int = 256

    def __post_init__(self):
        if not 1 <= self.width <= 256:
            raise ValueError(f"width must be in 1..256; got {self.width}")
        if not 1 <= self.stages <= 6:
            raise ValueError(f"stages must be in 1..6; got {self.stages}")
        if not 1 <= self.convs_per_stage <= 4:
            raise ValueError(f"convs_per_stage must be in 1..4; got {self.convs_per_stage}")
        if not 8 <= self.features <= 4096:
            raise ValueError(f"features must be in 8..4096; got {self.features}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class LossConfig:
    """Weights of the training loss.

    vertices: mean distance between predicted and true vertices, in object radii (supervised).
    silhouette, depth: renderer-in-the-loop image terms of the predicted mesh against the input
        images (with landmarks, the only terms on unlabelled data, ``--data``); depth in object radii.
    shading: the grey input against the predicted mesh shaded by the order-2 spherical-harmonic
        light (times a uniform albedo) that explains the input best, solved in closed form per
        sample over the pixels both cover (a Charbonnier error of grey levels): the light is
        never known, so the term asks only that the shape's normals can explain the shading.
        Needs the ``grey`` input.
    landmarks: reprojection of the model's landmarks (its blendshapes.json ``landmarks``) against
        2-D points: on rendered samples the truth's, projected with ``appearance.landmark_noise``
        and outliers; on ``--data`` the dataset's ``landmarks/`` (missing points count 0). The
        Cauchy loss of ``landmark_scale``, in pixels of the network's input (``resolution``).
    """

    vertices: float = 1.0
    silhouette: float = 0.0
    depth: float = 0.0
    shading: float = 0.0
    landmarks: float = 0.0
    landmark_scale: float = 0.5

    def __post_init__(self):
        for f in dataclasses.fields(self):
            _finite(getattr(self, f.name), f.name, nonnegative=True)
        if not self.landmark_scale > 0:
            raise ValueError(f"landmark_scale must be > 0 pixels; got {self.landmark_scale}")
        weights = ("vertices", "silhouette", "depth", "shading", "landmarks")
        if not any(getattr(self, name) for name in weights):
            raise ValueError("every loss weight is 0, so there is nothing to train")


@dataclasses.dataclass(frozen=True, kw_only=True)
class OptimConfig:
    """AdamW with linear warm-up and cosine decay to ``final_lr`` (a fraction of ``lr``), global
    gradient-norm clipping at ``clip``."""

    lr: float = 1e-3
    warmup: int = 500
    final_lr: float = 0.02
    weight_decay: float = 1e-4
    clip: float = 1.0

    def __post_init__(self):
        _finite(self.lr, "lr", positive=True)
        if self.warmup < 0:
            raise ValueError(f"warmup must be >= 0; got {self.warmup}")
        if not 0 <= self.final_lr <= 1:
            raise ValueError(f"final_lr is a fraction of lr in [0, 1]; got {self.final_lr}")
        _finite(self.weight_decay, "weight_decay", nonnegative=True)
        _finite(self.clip, "clip", positive=True)


@dataclasses.dataclass(frozen=True, kw_only=True)
class CheckpointConfig:
    """A checkpoint every ``every`` steps; the last ``keep`` are kept, and the best on validation."""

    every: int = 500
    keep: int = 3

    def __post_init__(self):
        if self.every < 1:
            raise ValueError(f"every must be >= 1; got {self.every}")
        if self.keep < 1:
            raise ValueError(f"keep must be >= 1; got {self.keep}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ValidationConfig:
    """A fixed validation set rendered once by pyrender (never trained on): ``samples`` poses
    drawn with ``seed`` from the sampling ranges, evaluated every ``every`` steps (and at each
    checkpoint)."""

    samples: int = 64
    every: int = 500
    seed: int = 12345

    def __post_init__(self):
        if not 1 <= self.samples <= 10_000:
            raise ValueError(f"samples must be in 1..10000; got {self.samples}")
        if self.every < 1:
            raise ValueError(f"every must be >= 1; got {self.every}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """An amortized training.

    model: "blendshapes" or "rigid". steps: optimiser steps. batch: samples per step (each
    seen through every camera of the rig). resolution: the network's input, longest image
    side in pixels (images are area-averaged to it). inputs: channels among mask, grey, depth.
    view_dropout: the probability that a view is hidden from the network in a sample (at least
    one stays), so that any subset of the rig's views works.
    proxy_faces: rasterize the training inputs from a decimation of the model with about this many
    faces (null: the model's own mesh); its vertices are points on the model's surface, so it
    follows the blendshapes. Rendering is most of a step's cost and grows with the faces.
    bounds: blendshape coefficients the network's output is confined to (``{expression: [0,
    1]}``), as in fit configs. refine: the fitting stage ``predict --refine`` runs (its steps
    are set by the command).
    correction_passes: 0 for a network that predicts from the views; N > 0 for a correcting
    network (``meshfit train ... --corrects RUN``): RUN's network predicts, the prediction is
    rendered (mask and depth) beside the views, and this network corrects it, N times in a row
    at prediction (once per training sample: the next pass sees a smaller error than it was
    trained on, and still helps). correction_faces, correction_supersample: how a correcting
    network renders the prediction it compares with the views: from a decimation of the model with
    about this many faces (null: the inputs' ``proxy_faces``), at this many times the network's
    resolution, area-averaged (1: one sample per pixel). That render is most of a pass's cost.
    correction_noise_rotation (degrees), correction_noise_translation (object radii): in training
    only, the first network's prediction is turned and moved by Gaussian noise of these standard
    deviations (per axis) before it is corrected, so the corrector also sees misalignments large
    enough to be plain in the images (as render-and-compare refiners are trained on perturbed
    poses); 0 trains on the first network's predictions alone. correction_frame: "world" (the
    turn and centre corrections from the views' pooled features) or "cameras" (each view's own,
    in its camera's axes, averaged in the world: ``decode_correction``).
    """

    model: Literal["blendshapes", "rigid"]
    seed: int = 0
    steps: int = 20_000
    batch: int = 32
    resolution: int = 64
    inputs: tuple[str, ...] = ("mask", "grey")
    view_dropout: float = 0.1
    proxy_faces: int | None = None
    bounds: dict[str, tuple[float, float]] = dataclasses.field(default_factory=dict)
    sampling: SamplingConfig = SamplingConfig()
    jitter: RigJitter = RigJitter()
    appearance: AppearanceConfig = AppearanceConfig()
    network: NetworkConfig = NetworkConfig()
    loss: LossConfig = LossConfig()
    optim: OptimConfig = OptimConfig()
    checkpoint: CheckpointConfig = CheckpointConfig()
    validation: ValidationConfig = ValidationConfig()
    log_every: int = 50
    correction_passes: int = 0
    correction_faces: int | None = None
    correction_supersample: int = 2
    correction_noise_rotation: float = 0.0
    correction_noise_translation: float = 0.0
    correction_frame: Literal["world", "cameras"] = "world"
    refine: StageConfig = StageConfig(
        name="refine", steps=50, lr=0.003, weights=LossWeights(silhouette=1.0), patience=0
    )

    def __post_init__(self):
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0; got {self.seed}")
        if not 1 <= self.steps <= MAX_STEPS * 10:
            raise ValueError(f"steps must be in 1..{MAX_STEPS * 10}; got {self.steps}")
        if not 1 <= self.batch <= MAX_BATCH:
            raise ValueError(f"batch must be in 1..{MAX_BATCH}; got {self.batch}")
        if not 16 <= self.resolution <= MAX_INPUT_RESOLUTION:
            raise ValueError(
                f"resolution must be in 16..{MAX_INPUT_RESOLUTION} pixels; got {self.resolution}"
            )
        if self.resolution % 2**self.network.stages:
            raise ValueError(
                f"resolution {self.resolution} must be a multiple of 2^network.stages = "
                f"{2**self.network.stages}"
            )
        if self.proxy_faces is not None and self.proxy_faces < 100:
            raise ValueError(f"proxy_faces must be at least 100 (or null); got {self.proxy_faces}")
        if self.loss.shading and "grey" not in self.inputs:
            raise ValueError("loss.shading compares with the grey input: add grey to inputs")
        if not self.inputs or len(set(self.inputs)) != len(self.inputs):
            raise ValueError(
                f"inputs must name distinct channels among {list(CHANNELS)}; got {list(self.inputs)}"
            )
        bad = sorted(set(self.inputs) - set(CHANNELS))
        if bad:
            raise ValueError(f"inputs: unknown channels {bad}; expected some of {list(CHANNELS)}")
        for name, r in self.bounds.items():
            if name not in ("identity", "expression") or self.model != "blendshapes":
                raise ValueError(
                    f"bounds.{name}: only blendshape identity and expression coefficients take bounds"
                )
            _range(r, f"bounds.{name}")
            if r[0] == r[1]:
                raise ValueError(f"bounds.{name}: expected low < high; got {list(r)}")
        if self.model == "rigid" and self.sampling.ranges:
            raise ValueError("sampling.ranges: a rigid model has no coefficients")
        if self.loss.depth and "depth" not in self.inputs:
            raise ValueError("loss.depth compares with the input depth: add depth to inputs")
        if self.loss.silhouette and "mask" not in self.inputs:
            raise ValueError("loss.silhouette compares with the input mask: add mask to inputs")
        if not 0 <= self.correction_passes <= 4:
            raise ValueError(f"correction_passes must be in 0..4; got {self.correction_passes}")
        if self.correction_faces is not None and self.correction_faces < 100:
            raise ValueError(f"correction_faces must be at least 100 (or null); got {self.correction_faces}")
        if not 1 <= self.correction_supersample <= 4:
            raise ValueError(f"correction_supersample must be in 1..4; got {self.correction_supersample}")
        _finite(self.correction_noise_rotation, "correction_noise_rotation", nonnegative=True)
        _finite(self.correction_noise_translation, "correction_noise_translation", nonnegative=True)
        if self.correction_noise_rotation > 30 or self.correction_noise_translation > 0.5:
            raise ValueError(
                "correction noise is for small misalignments: correction_noise_rotation <= 30 degrees, "
                "correction_noise_translation <= 0.5 radii"
            )
        if not self.correction_passes and (
            self.correction_faces is not None
            or self.correction_supersample != 2
            or self.correction_noise_rotation
            or self.correction_noise_translation
            or self.correction_frame != "world"
        ):
            raise ValueError(
                "correction_faces, correction_supersample, correction_noise_* and correction_frame set how "
                "a correcting network renders and learns its first network's prediction: they need "
                "correction_passes > 0"
            )
        if not 0 <= self.view_dropout < 1:
            raise ValueError(f"view_dropout must be in [0, 1); got {self.view_dropout}")
        if self.log_every < 1:
            raise ValueError(f"log_every must be >= 1; got {self.log_every}")
        if self.refine.params:
            raise ValueError("refine.params: refinement frees the representation's default parameters")
        if self.refine.optimizer == "adam_uniform":
            raise ValueError("refine.optimizer: adam_uniform is for free meshes; use adam or gauss_newton")
        if self.refine.optimizer == "gauss_newton":
            check_gauss_newton(self.refine.weights, self.refine.params, "refine")

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        """Validate plain data (parsed YAML); errors name the key path."""
        return from_dict(cls, data)

    @classmethod
    def load(cls, path) -> TrainConfig:
        """Read and validate a YAML config file."""
        from meshfit.config import load_yaml

        try:
            return cls.from_dict(load_yaml(path))
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from e
