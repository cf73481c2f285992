"""Per-representation recipes: how a free mesh, a rigid pose and a blendshape rig start, which
parameters their stages free by default, and what their results look like. Each recipe runs its
stages through the one stage runner (``meshfit.fitting.stage``); ``fit_views`` picks the recipe
for a config and a dataset of one frame or a sequence of frames.
"""

from __future__ import annotations

import dataclasses
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from scipy.spatial import cKDTree

from meshfit.camera import clip_range
from meshfit.config import ConfigError
from meshfit.fitting.appearance import (
    INITIAL_ALBEDO,
    albedo_from_views,
    appearance_out,
    initial_appearance,
    light_of,
    texture_from_vertices,
)
from meshfit.fitting.config import APPEARANCE, FitConfig
from meshfit.fitting.placement import estimate_placement, place_from_landmarks, search_rotation, visual_hull
from meshfit.fitting.stage import Problem, check_frames_split, check_views_per_step, fit_stage
from meshfit.io import Views
from meshfit.mesh import Mesh, _gpytoolbox, bounding_sphere
from meshfit.models import BlendshapeModel, FreeMeshModel, RigidModel, so3_exp, so3_log
from meshfit.objectives import Targets
from meshfit.render.lighting import linear_to_srgb, srgb_to_linear

__all__ = ["MAX_FACES", "FitResult", "fit_views"]

# A remeshed surface above this many faces is refused: it would take minutes a step.
MAX_FACES = 400_000

# Parameters a stage frees when it names none; in a sequence, which ones have a frame axis.
_DEFAULT_FREE = {
    "free_mesh": ("u",),
    "rigid": ("rotation", "translation"),
    "blendshapes": ("identity", "expression", "rotation", "translation"),
}
_PER_FRAME = {"rigid": ("rotation", "translation"), "blendshapes": ("expression", "rotation", "translation")}


class FitResult(NamedTuple):
    """mesh: the fitted Mesh in the cameras' world frame (rigid/blendshapes: the model's vertex
    order); for a sequence, the first frame's. params: JSON-ready parameters (rigid:
    ``object_to_world`` 4x4 for the model file's frame; blendshapes: coefficients and pose; a
    sequence: the shared ones and a ``frames`` list). history: one dict per stage (name, steps,
    losses, term_history, final terms, seconds, compile_seconds, resolution, faces).
    near, far: the clip range used. meshes: a sequence's fitted mesh per frame (else None).
    keyed_masks: [(T,) N, H, W] bool, the masks keyed from the background plates that a
    ``plates: key`` fit of data without masks used (its output measures the fit against them),
    else None."""

    mesh: Mesh
    params: dict
    history: list[dict]
    near: float
    far: float
    meshes: list[Mesh] | None = None
    keyed_masks: np.ndarray | None = None


def _targets(views: Views) -> Targets:
    def array(x):
        return None if x is None else jnp.asarray(x, jnp.float32)

    # A sequence's plates would need a frame axis; only one-frame fits use them (checked).
    plate = views.background if views.frames is None else None
    return Targets(array(views.mask), array(views.depth), array(views.rgb), array(views.landmarks),
                   array(views.landmark_confidence), array(plate))  # fmt: skip


def _remesh(
    vertices: np.ndarray, faces: np.ndarray, edge: float, where: str
) -> tuple[np.ndarray, np.ndarray]:
    v, f = _gpytoolbox().remesh_botsch(
        np.asarray(vertices, np.float64), np.asarray(faces, np.int32), i=5, h=float(edge), project=True
    )
    if len(f) > MAX_FACES:
        raise ValueError(
            f"{where}: remeshing made {len(f):,} faces (more than {MAX_FACES:,}); raise the edge length"
        )
    return np.asarray(v, np.float32), np.asarray(f, np.int32)


def _fit_free(config: FitConfig, problem: Problem, centre, initial: Mesh | None, progress: bool, masks):
    radius = problem.radius
    if initial is None and config.init.shape == "visual_hull":
        hull = visual_hull(problem.cameras, masks, centre, radius, resolution=config.init.hull_resolution)
        v, f = _remesh(
            np.asarray(hull.vertices),
            np.asarray(hull.faces),
            config.init.hull_edge * radius,
            "init.hull_edge",
        )
        initial = Mesh(v, f)
    elif initial is None:
        v, f = _gpytoolbox().icosphere(config.init.sphere_subdivisions)
        v = np.asarray(v) * radius * config.init.sphere_radius + centre
        initial = Mesh(v.astype(np.float32), np.asarray(f, np.int32))
    v, f = np.asarray(initial.vertices), np.asarray(initial.faces)
    appearance = {}
    if _fits_appearance(config):
        appearance, problem = _appearance_start(config, problem, len(v))
    history = []
    albedo_fitted = False
    for i, stage in enumerate(config.stages):
        t = time.perf_counter()
        if stage.remesh is not None:
            v_old = v
            v, f = _remesh(v, f, stage.remesh * radius, f"stages[{i}].remesh")
            if appearance:  # the albedo moves to the new vertices from the nearest old ones
                nearest = cKDTree(v_old).query(v)[1]
                appearance["albedo"] = jnp.asarray(np.asarray(appearance["albedo"])[nearest])
        remesh_s = time.perf_counter() - t
        if stage.weights.photometric and not albedo_fitted and config.albedo_start == "views":
            appearance["albedo"] = _albedo_start(problem, v, f, appearance)
        albedo_fitted = bool(stage.weights.photometric)
        mesh = Mesh(v, f)
        model = FreeMeshModel.from_mesh(mesh, lam=stage.lam)
        params, entry = fit_stage(problem, model, {**model.init_params(mesh.vertices), **appearance}, stage,
                                  free=_stage_free(config, stage), seed=config.seed + i,
                                  progress=progress)  # fmt: skip
        entry["seconds"] += remesh_s
        entry["remesh_seconds"] = remesh_s
        v = np.asarray(model.vertices(params))
        appearance = {k: params[k] for k in appearance}
        history.append(entry)
    out = {"vertices": int(v.shape[0]), "faces": int(f.shape[0]), **appearance_out(appearance)}
    colors = np.clip(np.asarray(appearance["albedo"]), 0.0, 1.0) if appearance else None
    return Mesh(v, f, colors=colors), out, history, None


def _fits_appearance(config: FitConfig) -> bool:
    return any(
        s.weights.photometric or s.weights.albedo_smoothness or s.weights.albedo_tv for s in config.stages
    )


def _albedo_start(problem: Problem, vertices, faces, params: dict) -> jax.Array:
    """The albedo a photometric stage starts from: projected from the views (a sequence: its
    first frame) under the current light, so that the first steps do not bend the shape to
    explain a grey albedo."""
    rgb = problem.targets.rgb if problem.frames is None else problem.targets.rgb[0]
    v = np.asarray(vertices)
    v = v if v.ndim == 2 else v[0]
    albedo = albedo_from_views(v, faces, problem.cameras, rgb, near=problem.near, far=problem.far,
                               light=light_of(params), tolerance=0.02 * problem.radius,
                               gain=params.get("gain"))  # fmt: skip
    return jnp.asarray(albedo)


def _initial_rotation(config: FitConfig) -> np.ndarray:
    """Start rotation [3, 3] (object -> world)."""
    return np.asarray(so3_exp(jnp.asarray(np.radians(config.init.rotation), jnp.float32)))


def _centres(config: FitConfig, centres: np.ndarray) -> np.ndarray:
    """Where the object's centre starts: [3], or [T, 3] for a sequence."""
    if config.init.translation is None:
        return centres
    return np.broadcast_to(np.asarray(config.init.translation, np.float64), centres.shape)


def _stage_free(config: FitConfig, stage) -> tuple[str, ...]:
    """What a stage fits: its ``params``, else the representation's defaults plus, when it weighs
    the photometric term, the appearance (and the per-camera gains the config asks for)."""
    if stage.params:
        return stage.params
    appearance = ()
    if stage.weights.photometric:
        appearance = (*APPEARANCE[config.light], *(("gain",) if config.gain else ()))
        if config.appearance == "texture":
            appearance = tuple("texture" if k == "albedo" else k for k in appearance)
        if config.background_colour:
            appearance = (*appearance, "background")
    return (*_DEFAULT_FREE[config.model], *appearance)


def _run_stages(config, problem, model, params, progress):
    history = []
    albedo_fitted = False
    for i, stage in enumerate(config.stages):
        if stage.weights.photometric and not albedo_fitted and config.albedo_start == "views":
            albedo = _albedo_start(problem, model.vertices(params), model.faces, params)
            if "texture" in params:
                albedo = jnp.asarray(texture_from_vertices(albedo, model.faces, model.uvs, model.uv_faces,
                                                           config.texture_size))  # fmt: skip
                params["texture"] = albedo
            else:
                params["albedo"] = albedo
        albedo_fitted = albedo_fitted or bool(stage.weights.photometric)
        params, entry = fit_stage(problem, model, params, stage, free=_stage_free(config, stage),
                                  seed=config.seed + i, progress=progress)  # fmt: skip
        if isinstance(model, RigidModel) and problem.frames is None:
            model, params = model.rebased(params)  # keep the increments small
        history.append(entry)
    return model, params, history


def _start_frames(start: dict, T: int | None) -> list[dict]:
    """The per-frame entries of a start (params.json form): one frame, or T of a sequence."""
    frames = start.get("frames", [start])
    if (T or 1) != len(frames) or (T is None and "frames" in start):
        raise ValueError(
            f"the start has {len(frames)} frame(s) but the data has {T or 1}"
            + ("" if T is None else " (a sequence's start lists its frames)")
        )
    return [{**start, **f} for f in frames]


def _fit_rigid(config: FitConfig, problem: Problem, centres, mesh: Mesh, progress: bool, start=None):
    c_model, _ = bounding_sphere(mesh.vertices)
    T = problem.frames
    R0 = _initial_rotation(config)
    if start is not None:
        # Poses in params.json form (object_to_world of the file frame, scale folded in).
        Ms = [np.asarray(f["object_to_world"], np.float64) for f in _start_frames(start, T)]
        scale = float(start.get("frames", [start])[0].get("scale", np.cbrt(np.linalg.det(Ms[0][:3, :3]))))
        Rs = [M[:3, :3] / scale for M in Ms]
        R0 = Rs[0].astype(np.float32)
        centres = np.stack([M[:3, :3] @ c_model + M[:3, 3] for M in Ms])
        centres = centres[0] if T is None else centres
    # Rotate about the object's centre: the template is centred, and the file frame comes back at the end.
    model = RigidModel.from_mesh(Mesh(np.asarray(mesh.vertices) - c_model.astype(np.float32), mesh.faces,
                                      uvs=mesh.uvs, uv_faces=mesh.uv_faces), rotation=R0)  # fmt: skip
    params = model.init_params(scale=config.init.scale if start is None else scale)
    params["translation"] = jnp.asarray(centres, jnp.float32)
    if T is not None:
        params["rotation"] = jnp.zeros((T, 3), jnp.float32)
        if start is not None:
            rel = np.stack([R @ Rs[0].T for R in Rs]).astype(np.float32)
            params["rotation"] = so3_log(jnp.asarray(rel))
    appearance = _fits_appearance(config)
    if appearance:
        start_appearance, problem = _appearance_start(config, problem, model.num_vertices)
        params.update(start_appearance)
        if config.appearance == "texture":
            params.pop("albedo")
            params["texture"] = _initial_texture(config, mesh)
        elif config.albedo_start == "model":
            if mesh.colors is None:
                raise ValueError("albedo_start: model needs a mesh with vertex colours; this one has none")
            params["albedo"] = jnp.clip(jnp.asarray(mesh.colors, jnp.float32)[:, :3], 0.0, 1.0)
    if config.init.rotation_search and start is None:
        first = problem if T is None else _frame_problem(problem, 0)
        p0 = params if T is None else {**params, "rotation": params["rotation"][0],
                                       "translation": params["translation"][0]}  # fmt: skip
        model = search_rotation(first, model, p0, config.stages[0], count=config.init.rotation_search,
                                seed=config.seed)  # fmt: skip
    model, params, history = _run_stages(config, problem, model, params, progress)
    shift = np.eye(4)
    shift[:3, 3] = -c_model

    def frame_out(p):
        M = np.asarray(model.object_to_world(p), np.float64)
        return {"object_to_world": (M @ shift).tolist(), "scale": float(np.exp(p["log_scale"]))}

    look = _look(params, mesh)
    if T is None:
        out = {**frame_out(params), **appearance_out(params)}
        return Mesh(np.asarray(model.vertices(params)), mesh.faces, **look), out, history, None
    frames = [_frame_params(params, t, _PER_FRAME["rigid"]) for t in range(T)]
    meshes = [Mesh(np.asarray(model.vertices(p)), mesh.faces, **look) for p in frames]
    return meshes[0], {"frames": [frame_out(p) for p in frames], **appearance_out(params)}, history, meshes


def _look(params: dict, mesh: Mesh) -> dict:
    """The fitted appearance as Mesh fields: linear vertex colours (as ``render_views`` reads
    them), or ``mesh``'s texture coordinates and the texture, sRGB-encoded as textures are read."""
    if "albedo" in params:
        return {"colors": np.clip(np.asarray(params["albedo"]), 0.0, 1.0)}
    if "texture" in params:
        tex = np.asarray(linear_to_srgb(params["texture"]))
        return {"uvs": mesh.uvs, "uv_faces": mesh.uv_faces, "texture": tex}
    return {}


def _initial_texture(config: FitConfig, mesh: Mesh, what: str = "the mesh") -> jax.Array:
    """The linear albedo texture [S, S, 3] a fit with ``appearance: texture`` starts from:
    the mesh's own texture (``albedo_start: model``) resized, or grey (a ``views`` start is
    baked when the first photometric stage begins). ``what`` names the mesh in errors."""
    if mesh.uvs is None:
        raise ValueError(
            f"appearance: texture needs texture coordinates; {what} has none (use appearance: vertex)"
        )
    uv = np.asarray(mesh.uvs)
    if uv.min() < -1.0 or uv.max() > 2.0:
        raise ValueError(
            f"appearance: texture fits one texture repeated over UV space; {what}'s texture coordinates "
            f"run from {uv.min():.3g} to {uv.max():.3g} (tiled or UDIM layouts are not supported)"
        )
    S = config.texture_size
    if config.albedo_start != "model":
        return jnp.full((S, S, 3), INITIAL_ALBEDO, jnp.float32)
    if mesh.texture is None:
        raise ValueError("albedo_start: model needs the mesh's texture image; this one has none")
    tex = jnp.asarray(mesh.texture, jnp.float32)
    tex = jnp.broadcast_to(tex, tex.shape[:2] + (3,)) if tex.shape[-1] == 1 else tex[..., :3]
    # Filter linear colour, as the fit's mip pyramid does.
    return jnp.clip(jax.image.resize(srgb_to_linear(tex), (S, S, 3), "linear", antialias=True), 0.0, 1.0)


def _frame_params(params: dict, t: int, per_frame) -> dict:
    return {k: (v[t] if k in per_frame else v) for k, v in params.items()}


def _frame_problem(problem: Problem, t: int) -> Problem:
    tg = Targets(*(None if x is None else x[t] for x in problem.targets))
    return dataclasses.replace(problem, targets=tg, per_frame=(), smoothness=0.0, devices=None)


def _blendshape_start(model: BlendshapeModel, start: dict, T: int | None) -> dict:
    """Parameters from a start in params.json form (a sequence: identity and scale shared)."""
    frames = _start_frames(start, T)
    id_names = model.identity_names or [f"identity{i}" for i in range(model.num_identity)]
    exp_names = model.expression_names or [f"expression{i}" for i in range(model.num_expression)]

    def coeffs(entry: dict, key: str, names) -> np.ndarray:
        given = entry.get(key, {})
        missing = sorted(set(names) - set(given))
        if missing:
            raise ValueError(f"the start gives no {key} coefficients {missing}")
        return np.array([given[n] for n in names], np.float32)

    per = {
        "expression": np.stack([coeffs(f, "expression", exp_names) for f in frames]),
        "rotation": np.stack([np.asarray(f["rotation_axis_angle"], np.float32) for f in frames]),
        "translation": np.stack([np.asarray(f["translation"], np.float32) for f in frames]),
    }
    params = {
        "identity": jnp.asarray(np.mean([coeffs(f, "identity", id_names) for f in frames], 0)),
        "log_scale": jnp.asarray(np.log(float(np.mean([f["scale"] for f in frames]))), jnp.float32),
    }
    for k, v in per.items():
        params[k] = jnp.asarray(v if T is not None else v[0])
    return params


def _fit_blendshapes(config: FitConfig, problem: Problem, centres, model: BlendshapeModel, progress: bool,
                     start=None, poses=None):  # fmt: skip
    c_model, _ = bounding_sphere(model.neutral)
    R = _initial_rotation(config)
    t = centres - config.init.scale * (R @ c_model)  # vertices = s R x + t: the centre lands on `centres`
    T = problem.frames
    coeffs = {
        k: jnp.clip(v, *config.bounds[k]) if k in config.bounds else v for k, v in model.init_params().items()
    }
    params = {
        **coeffs,
        "rotation": jnp.asarray(np.radians(config.init.rotation), jnp.float32),
        "translation": jnp.asarray(t, jnp.float32),
        "log_scale": jnp.asarray(np.log(config.init.scale), jnp.float32),
    }
    if T is not None:
        for k in ("expression", "rotation"):
            params[k] = jnp.broadcast_to(params[k], (T, *params[k].shape))
    if poses is not None:  # placed from the landmarks (data without masks): (R, s, t) per frame
        rot = so3_log(jnp.asarray(np.stack([p[0] for p in poses]), jnp.float32))
        trans = jnp.asarray(np.stack([p[2] for p in poses]), jnp.float32)
        params["rotation"], params["translation"] = (rot, trans) if T is not None else (rot[0], trans[0])
        params["log_scale"] = jnp.asarray(np.log(np.median([p[1] for p in poses])), jnp.float32)
    if start is not None:
        params = _blendshape_start(model, start, T)
        for k in ("identity", "expression"):
            if k in config.bounds:
                params[k] = jnp.clip(params[k], *config.bounds[k])
    appearance = _fits_appearance(config)
    surface = Mesh(np.asarray(model.neutral), np.asarray(model.faces), uvs=model.uvs, uv_faces=model.uv_faces)
    if appearance:
        start_appearance, problem = _appearance_start(config, problem, model.num_vertices)
        params.update(start_appearance)
        if config.appearance == "texture":
            params.pop("albedo")
            params["texture"] = _initial_texture(config, surface, "the blendshape model's neutral")
    _, params, history = _run_stages(config, problem, model, params, progress)
    id_names = model.identity_names or [f"identity{i}" for i in range(model.num_identity)]
    exp_names = model.expression_names or [f"expression{i}" for i in range(model.num_expression)]

    def frame_out(p):
        return {
            "expression": dict(zip(exp_names, np.asarray(p["expression"]).tolist())),
            "rotation_axis_angle": np.asarray(p["rotation"]).tolist(),
            "translation": np.asarray(p["translation"]).tolist(),
        }

    shared = {"identity": dict(zip(id_names, np.asarray(params["identity"]).tolist())),
              "scale": float(np.exp(params["log_scale"]))}  # fmt: skip
    look = _look(params, surface)
    if appearance:
        shared.update(appearance_out(params))
    if T is None:
        out = {"identity": shared["identity"], **frame_out(params), "scale": shared["scale"],
               **appearance_out(params)}  # fmt: skip
        return Mesh(np.asarray(model.vertices(params)), model.faces, **look), out, history, None
    frames = [_frame_params(params, i, _PER_FRAME["blendshapes"]) for i in range(T)]
    meshes = [Mesh(np.asarray(model.vertices(p)), model.faces, **look) for p in frames]
    return meshes[0], {**shared, "frames": [frame_out(p) for p in frames]}, history, meshes


def _check_data(config: FitConfig, views: Views, targets: Targets, model) -> None:
    n = len(views.names)
    for i, s in enumerate(config.stages):
        w = s.weights
        if w.depth and targets.depth is None:
            raise ValueError(f"stages[{i}] ({s.name}) weighs depth but the dataset has no depth/ folder")
        if (w.shading or w.photometric) and targets.rgb is None:
            term = "shading" if w.shading else "the photometric term"
            raise ValueError(f"stages[{i}] ({s.name}) weighs {term} but the dataset has no rgb/ folder")
        if w.landmarks:
            if config.model != "blendshapes":
                raise ValueError(
                    f"stages[{i}] ({s.name}) weighs landmarks: a blendshape model defines them; a "
                    f"{config.model} fit has none"
                )
            if targets.landmarks is None:
                raise ValueError(
                    f"stages[{i}] ({s.name}) weighs landmarks but the dataset has no landmarks/ folder"
                )
            if isinstance(model, BlendshapeModel):
                if not model.num_landmarks:
                    raise ValueError(
                        f"stages[{i}] ({s.name}) weighs landmarks but the model defines none "
                        '(blendshapes.json: "landmarks": {"vertices": [...]})'
                    )
                _check_landmark_count(views, model)
        check_views_per_step(s, n, f"stages[{i}]")


def _check_without_masks(config: FitConfig, views: Views, model, *, unused_plates: bool = False) -> str:
    """Data without masks: a blendshape fit placed by its landmarks, or a free-mesh or
    blendshape fit placed from its background plates (``background/``), with no silhouette
    term. Returns how it is placed: "landmarks" or "plates"."""
    if config.model == "rigid":
        raise ValueError("a rigid fit needs masks (a mask/ folder): they place the object")
    for i, s in enumerate(config.stages):
        w = s.weights
        if w.silhouette or w.soft_silhouette or w.soft_iou:
            if views.background is not None:
                hint = " (plates: key keys masks from its background/ plates)"
            elif unused_plates:
                hint = (
                    " (plates: false leaves its background/ plates unused; plates: key keys masks from them)"
                )
            else:
                hint = " nor background/ plates to key them from" if config.plates == "key" else ""
            raise ValueError(
                f"stages[{i}] ({s.name}) weighs the silhouette but the dataset has no mask/ folder{hint}"
            )
    landmarks = views.landmarks is not None and isinstance(model, BlendshapeModel) and model.num_landmarks
    if config.model == "blendshapes" and landmarks:
        _check_landmark_count(views, model)
        return "landmarks"
    if views.background is not None:
        if views.frames is not None:
            raise ValueError("background plates place one-frame fits; a sequence without masks is "
                             "placed from its landmarks")  # fmt: skip
        if not any(s.weights.photometric for s in config.stages):
            raise ValueError("the dataset has no mask/ folder: with background/ plates the photometric "
                             "term fits the outline, but no stage weighs it")  # fmt: skip
        return "plates"
    if config.model == "blendshapes":
        raise ValueError(
            "the dataset has no mask/ folder: a blendshape fit without masks is placed from its "
            "landmarks/ (with a model that defines landmarks) or its background/ plates; it has neither"
        )
    raise ValueError(
        "a free_mesh fit needs masks (a mask/ folder) or background/ plates (and a photometric "
        "stage): they place the object"
    )


def _appearance_start(config: FitConfig, problem: Problem, num_vertices: int) -> tuple[dict, Problem]:
    """A photometric fit's starting appearance (``initial_appearance``; a fitted backdrop colour
    starts at its one-colour plates') and the problem with the appearance's boxes."""
    backdrop = np.asarray(problem.targets.background)[:, 0, 0, :] if config.background_colour else None
    params = initial_appearance(config.light, config.gain, problem.cameras, num_vertices, background=backdrop)
    unit = {k: (0.0, 1.0) for k in ("albedo", "texture", "background")}  # boxes of the keys present only
    return params, dataclasses.replace(problem, bounds={**problem.bounds, **unit})


def _backdrop_plates(views: Views) -> Views:
    """``background_colour``: plates of one colour per view, the median of its border pixels
    (where the fitted backdrop colour starts, and what places a fit without masks)."""
    if views.background is not None:
        raise ValueError(
            "background_colour: the dataset has background/ plates, which are its background "
            "(leave background_colour out, or set plates: false to fit a colour instead)"
        )
    if views.frames is not None:
        raise ValueError("background_colour fits one frame's backdrop; a sequence's is not fitted yet")
    if views.rgb is None:
        raise ValueError("background_colour: the dataset has no rgb/ folder")
    rgb = np.asarray(views.rgb, np.float32)
    border = np.concatenate([rgb[:, 0], rgb[:, -1], rgb[:, 1:-1, 0], rgb[:, 1:-1, -1]], axis=1)  # [N, P, 3]
    colour = np.median(border, axis=1)
    return views._replace(background=np.ascontiguousarray(np.broadcast_to(colour[:, None, None], rgb.shape)))


def _plate_masks(views: Views) -> np.ndarray:
    """[(T,) N, H, W] bool: the object where each view differs from its background plate
    (``meshfit.capture.plate_mask``, as ``meshfit import --plates`` keys them), for placing a
    fit and carving its visual hull, or as its masks (``plates: key``)."""
    from meshfit.capture import plate_mask

    def u8(img):
        return np.clip(np.rint(np.asarray(img) * 255), 0, 255).astype(np.uint8)

    frames = [None] if views.frames is None else list(views.frames)
    rgbs = [views.rgb] if views.frames is None else list(views.rgb)
    out = []
    for frame, rgb in zip(frames, rgbs):
        masks = np.stack([plate_mask(u8(image), u8(bg)) > 0 for image, bg in zip(rgb, views.background)])
        empty = [views.names[i] for i in np.flatnonzero(~masks.any((1, 2)))]
        if empty:
            where = "" if frame is None else f"frame {frame}: "
            raise ValueError(
                f"{where}views {empty} do not differ from their background plates: no object to place"
            )
        out.append(masks)
    return out[0] if views.frames is None else np.stack(out)


def _check_landmark_count(views: Views, model: BlendshapeModel) -> None:
    if views.landmarks.shape[-2] != model.num_landmarks:
        raise ValueError(
            f"the dataset's landmark files have {views.landmarks.shape[-2]} points; the model defines "
            f"{model.num_landmarks} landmarks"
        )


def fit_views(
    config: FitConfig,
    views: Views,
    *,
    model: Mesh | BlendshapeModel | None = None,
    progress: bool = True,
    devices=None,
    start: dict | None = None,
) -> FitResult:
    """Fit ``config.model`` to a dataset of one frame, or of a sequence (``views.frames``).

    Args:
        config: the FitConfig.
        views: cameras and images (``meshfit.io.load_views`` / ``load_sequence``); masks are
            required (except for a blendshape fit placed by its landmarks, or a one-frame fit
            with background plates that weighs the photometric term, with no silhouette
            term), rgb, depth and landmarks when a stage weighs the shading, depth or landmark
            terms. Background plates, when given, are what a one-frame photometric fit lays
            its render over.
        model: rigid: the known Mesh (required); blendshapes: the BlendshapeModel (required);
            free_mesh: an initial Mesh (default: an icosphere placed from the masks).
        progress: tqdm bars per stage.
        devices: a sequence only: split the frames over these jax devices (``jax.shard_map``).
        start: rigid and blendshapes: where the fit starts, in the form ``params.json`` holds
            (a ``meshfit fit`` or ``meshfit predict`` output; a sequence's lists its frames),
            instead of the config's ``init`` (no rotation search).
    A sequence fits per-frame pose (and expression) with shared shape (identity, scale), plus
    ``config.smoothness``; a free mesh fits one frame only.
    """
    keyed = None
    if config.plates == "key" and views.mask is None and views.background is not None:
        # Masks keyed from the plates stand in for the mask/ folder: the silhouettes they give
        # fit the outline more closely than the render laid over a busy plate does.
        keyed = _plate_masks(views)
        views = views._replace(mask=keyed)
    unused_plates = config.plates is False and views.background is not None
    if config.plates is not True:
        views = views._replace(background=None)
    if config.background_colour:
        views = _backdrop_plates(views)
    targets = _targets(views)
    cams = views.cameras
    _check_data(config, views, targets, model)
    sequence = views.frames is not None
    if sequence and config.model == "free_mesh":
        raise ValueError("a free_mesh fit takes one frame; sequences fit blendshape rigs or rigid poses")
    if devices is not None and not sequence:
        raise ValueError("devices= splits the frames of a sequence; this dataset has one frame")
    if devices is not None:
        check_frames_split(len(views.frames), list(devices))
    if len(views.names) < 2:
        raise ValueError(
            f"fitting needs at least two views to place the object; the dataset has {len(views.names)}"
        )
    poses = None
    masks = None if views.mask is None else np.asarray(views.mask)
    placed_by = (
        "masks"
        if views.mask is not None
        else _check_without_masks(config, views, model, unused_plates=unused_plates)
    )
    if placed_by == "plates":
        # No masks but clean plates: the object is where the views differ from them (for the
        # placement and the visual hull only; the photometric term compares whole images).
        masks = _plate_masks(views)
    if sequence and views.background is not None and any(s.weights.photometric for s in config.stages):
        raise ValueError("background/ plates are compared by one-frame fits; a sequence's are not "
                         "used yet (remove the folder, or give masks)")  # fmt: skip
    if placed_by == "landmarks":
        # No masks (a face photographed with hair and shoulders): a blendshape model is placed
        # from its landmarks, and the stages fit terms that need no silhouette.
        marks = views.landmarks if sequence else views.landmarks[None]
        conf = views.landmark_confidence if sequence else views.landmark_confidence[None]
        rest = np.asarray(model.landmark_points(model.neutral))
        poses = [place_from_landmarks(cams, d, c, rest) for d, c in zip(marks, conf)]
        c_model, r_model = bounding_sphere(model.neutral)
        centres = np.stack([s * R @ c_model + t for R, s, t in poses])
        centres = centres if sequence else centres[0]
        radius = float(r_model * np.median([s for _, s, _ in poses]))
    elif sequence:
        placed = [estimate_placement(cams, m) for m in masks]
        centres = np.stack([c for c, _ in placed])
        radius = float(np.median([r for _, r in placed]))
    else:
        centres, radius = estimate_placement(cams, masks)
    if config.model == "rigid":
        if not isinstance(model, Mesh):
            raise ValueError("a rigid fit needs the known mesh (CLI: --model MESH)")
        _, radius = bounding_sphere(model.vertices)
    elif config.model == "blendshapes":
        if not isinstance(model, BlendshapeModel):
            raise ValueError("a blendshape fit needs the model (CLI: --model FOLDER_OR_NPZ)")
        _, radius = bounding_sphere(model.neutral)
    elif model is not None and not isinstance(model, Mesh):
        raise ValueError("a free_mesh fit takes an optional initial Mesh as its model")
    # Room for the object about every frame's centre: 2 radii (the start may be off).
    ranges = [clip_range(cams, c, radius, margin=2.0) for c in np.reshape(centres, (-1, 3))]
    near = config.near if config.near is not None else min(r[0] for r in ranges)
    far = config.far if config.far is not None else max(r[1] for r in ranges)
    if not 0 < near < far:
        raise ConfigError(f"near/far must satisfy 0 < near < far; got near={near}, far={far}")
    problem = Problem(
        cams, targets, near, far, radius, dict(config.bounds),
        per_frame=_PER_FRAME.get(config.model, ()) if sequence else (), smoothness=config.smoothness,
        devices=None if devices is None else tuple(devices),
    )  # fmt: skip
    if start is not None and config.model == "free_mesh":
        raise ValueError("a free_mesh fit starts from a mesh (model=), not from predicted parameters")
    placed = _centres(config, centres)
    if config.model == "free_mesh":
        mesh, params, history, meshes = _fit_free(config, problem, placed, model, progress, masks)
    elif config.model == "rigid":
        mesh, params, history, meshes = _fit_rigid(config, problem, placed, model, progress, start)
    else:
        mesh, params, history, meshes = _fit_blendshapes(
            config, problem, placed, model, progress, start, None if start is not None else poses
        )
    return FitResult(mesh, params, history, near, far, meshes, keyed)
