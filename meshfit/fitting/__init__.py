"""Fitting: configs, the optimisation loop, the one stage runner, placement, per-representation
recipes and the file edge of ``meshfit fit``.

Layers, lowest first: ``loop`` (``make_step``, ``run_stage``: a jitted step and its host loop),
``config`` (``FitConfig`` and its stages), ``stage`` (a stage of a config applied to a model, one
frame or a sequence), ``placement`` (centre, radius, visual hull, rotation search), ``recipes``
(``fit_views``: free mesh, rigid pose, blendshapes), ``folder`` (``fit_folder``: files in and out).
"""

from meshfit.fitting.config import PARAMETERS, FitConfig, InitConfig, StageConfig
from meshfit.fitting.folder import POOR_FIT_IOU, fit_folder, load_config, resolve_config, shipped_configs
from meshfit.fitting.loop import (
    DivergenceWarning,
    FitState,
    StageResult,
    make_optimizer,
    make_step,
    run_stage,
)
from meshfit.fitting.placement import estimate_placement, place_from_landmarks, search_rotation, visual_hull
from meshfit.fitting.recipes import MAX_FACES, FitResult, fit_views
from meshfit.fitting.stage import Problem, downsample_targets, fit_stage, prepare_stage, stage_optimizer

__all__ = [
    "MAX_FACES",
    "PARAMETERS",
    "POOR_FIT_IOU",
    "DivergenceWarning",
    "FitConfig",
    "FitResult",
    "FitState",
    "InitConfig",
    "Problem",
    "StageConfig",
    "StageResult",
    "downsample_targets",
    "estimate_placement",
    "fit_folder",
    "fit_stage",
    "fit_views",
    "load_config",
    "make_optimizer",
    "make_step",
    "place_from_landmarks",
    "prepare_stage",
    "resolve_config",
    "run_stage",
    "search_rotation",
    "shipped_configs",
    "stage_optimizer",
    "visual_hull",
]
