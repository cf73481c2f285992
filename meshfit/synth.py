"""Reference multi-view data rendered with pyrender (OpenGL), independent of meshfit's rasterizer.

``pyrender_views`` renders a Mesh from a batch of Cameras; ``synthesize`` places a rig around a
mesh and writes a dataset folder (the layout ``meshfit synth`` documents)::

    DIR/cameras.json      cameras (OpenCV convention, meshfit's format; near/far as extra keys)
    DIR/rgb/NNN.png       shaded (Lambert, directional lights + ambient) or textured colour, 8-bit sRGB
    DIR/mask/NNN.png      coverage, 0 or 255
    DIR/depth/NNN.npy     camera-space z, float32 [H, W], 0 where empty
    DIR/landmarks/NNN.json  with a landmark definition: its points projected (optionally noisy,
                          with outliers, as a detector gives them; ``meshfit.io.landmarks``)
    DIR/background/NNN.png  with a plate image: each view's clean background plate (the object
                          is rendered over it in rgb/)
    DIR/mesh.obj          the ground-truth mesh, in its own frame, units and vertex order
    DIR/scene.json        how it was made (seed, lights, rig, source mesh)

pyrender needs an OpenGL context: headless by EGL (Mesa's software rasteriser on a machine
without a GPU) unless ``PYOPENGL_PLATFORM`` says otherwise (``osmesa``). Multisampling is off,
so each pixel samples the scene exactly at its centre (the pixel convention in
``meshfit.camera``) and colour, mask and depth agree pixel for pixel.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

from meshfit.camera import Camera, clip_range
from meshfit.io import (
    atomic_dir,
    check_output_dir,
    load_landmark_definition,
    load_mesh,
    save_cameras,
    save_mesh,
    write_landmarks,
    write_views,
)
from meshfit.mesh import Mesh, bounding_sphere
from meshfit.render.lighting import AMBIENT, BASE_COLOR, LIGHT_DIRECTION, LIGHT_INTENSITY
from meshfit.rigs import sphere_rig

__all__ = ["MAX_SIZE", "MAX_VIEWS", "PyrenderViews", "pyrender_views", "synthesize"]

# What one synth call may ask for: OpenGL's offscreen buffers and memory set the size.
MAX_SIZE = 8192
MAX_VIEWS = 2000
# pyrender's shaders take at most four directional lights (it drops the rest without a word).
MAX_LIGHTS = 4
# meshfit's studio light: one key light from above, front and side (render.lighting's).
DEFAULT_LIGHTS = ((LIGHT_DIRECTION, LIGHT_INTENSITY),)


def _check_lights(lights) -> list[tuple[np.ndarray, float]]:
    """``((direction, intensity), ...)`` -> the same with unit float64 directions, checked: 1 to
    ``MAX_LIGHTS`` lights, each direction a finite non-zero 3-vector, each intensity finite >= 0."""
    lights = list(lights)
    if not 1 <= len(lights) <= MAX_LIGHTS:
        raise ValueError(f"give 1 to {MAX_LIGHTS} directional lights (pyrender's limit); got {len(lights)}")
    out = []
    for i, light in enumerate(lights):
        try:
            direction, intensity = light
            d = np.asarray(direction, np.float64)
            intensity = float(intensity)
        except (TypeError, ValueError):
            raise ValueError(f"light {i}: expected (direction [3], intensity); got {light!r}") from None
        norm = np.linalg.norm(d) if d.shape == (3,) and np.all(np.isfinite(d)) else 0.0
        if norm == 0.0:
            raise ValueError(f"light {i}: the direction must be a finite non-zero 3-vector; got {d.tolist()}")
        if not (np.isfinite(intensity) and intensity >= 0):
            raise ValueError(f"light {i}: the intensity must be a finite number >= 0; got {intensity}")
        out.append((d / norm, intensity))
    return out


class PyrenderViews(NamedTuple):
    """pyrender renders of N views.

    rgb: [N, H, W, 3] uint8. mask: [N, H, W] bool coverage. depth: [N, H, W] float32
    camera-space z, 0 where empty. face_id: [N, H, W] int32 index of the visible face, -1 where
    empty (only when asked for, else None).
    """

    rgb: np.ndarray
    mask: np.ndarray
    depth: np.ndarray
    face_id: np.ndarray | None = None


def _pyrender():
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
    import pyrender

    return pyrender


@contextlib.contextmanager
def _single_sample():
    """Render without multisampling, so every pixel samples the scene exactly at its centre.

    pyrender enables 4x MSAA for every pass but its SEG pass, and EGL honours it while OSMesa
    does not; with it, edge pixels blend colours (and face ids) and the output would depend on
    the platform. pyrender exposes no switch, so its ``glEnable`` is wrapped for the duration.
    """
    import pyrender.renderer as pr
    from OpenGL.GL import GL_MULTISAMPLE

    original = pr.glEnable
    pr.glEnable = lambda cap: pr.glDisable(cap) if cap == GL_MULTISAMPLE else original(cap)
    try:
        yield
    finally:
        pr.glEnable = original


def _to_trimesh(mesh: Mesh, textured: bool):
    import trimesh
    from PIL import Image

    v = np.asarray(mesh.vertices, np.float64)
    f = np.asarray(mesh.faces)
    if textured:
        if mesh.texture is None:
            raise ValueError("textured rendering needs a mesh with a texture (and uvs)")
        # OpenGL wants one UV per vertex: split vertices along UV seams for rendering only.
        corners_v = f.reshape(-1)
        corners_t = np.asarray(mesh.uv_faces).reshape(-1)
        pairs, inverse = np.unique(np.stack([corners_v, corners_t], 1), axis=0, return_inverse=True)
        tex = np.asarray(mesh.texture)
        image = Image.fromarray(np.clip(np.rint(tex * 255), 0, 255).astype(np.uint8).squeeze())
        # White diffuse factor: the texture alone is the albedo (trimesh's default would tint it).
        material = trimesh.visual.material.SimpleMaterial(image=image, diffuse=(255, 255, 255, 255))
        visual = trimesh.visual.TextureVisuals(uv=np.asarray(mesh.uvs)[pairs[:, 1]], material=material)
        return trimesh.Trimesh(v[pairs[:, 0]], inverse.reshape(-1, 3), visual=visual, process=False)
    tm = trimesh.Trimesh(v, f, process=False, maintain_order=True)
    if mesh.colors is not None:
        tm.visual = trimesh.visual.ColorVisuals(
            tm, vertex_colors=np.array(mesh.colors)
        )  # a writable copy: trimesh edits it
    return tm


def _face_id_mesh(mesh: Mesh, pyrender):
    """Unlit mesh whose faces carry their index + 1 as a 24-bit RGB colour (0 = background)."""
    import trimesh

    v = np.asarray(mesh.vertices, np.float64)
    f = np.asarray(mesh.faces)
    num_faces = len(f)
    if num_faces >= 2**24 - 1:
        raise ValueError(f"face ids need 24 bits; {num_faces} faces is too many")
    ids = np.arange(1, num_faces + 1)
    rgba = np.stack([ids & 255, (ids >> 8) & 255, (ids >> 16) & 255, np.full(num_faces, 255)], 1)
    tm = trimesh.Trimesh(v[f].reshape(-1, 3), np.arange(3 * num_faces).reshape(-1, 3), process=False)
    tm.visual = trimesh.visual.ColorVisuals(tm, vertex_colors=np.repeat(rgba.astype(np.uint8), 3, axis=0))
    return pyrender.Mesh.from_trimesh(tm, smooth=False)


def pyrender_views(
    mesh: Mesh,
    cameras: Camera,
    *,
    near: float,
    far: float,
    textured: bool = False,
    face_ids: bool = False,
    lights=DEFAULT_LIGHTS,
    ambient: float = AMBIENT,
    background: tuple[float, float, float] = (0.0, 0.0, 0.0),
) -> PyrenderViews:
    """Render ``mesh`` from each camera of a [N] batch with pyrender (OpenGL, offscreen).

    Faces are drawn two-sided (no culling), as meshfit's rasterizer does.

    Args:
        mesh: the mesh; vertex colours are used when present, else a light grey.
        cameras: batch shape (N,), OpenCV convention.
        near, far: clip planes in camera-space z; keep them tight for depth precision (24-bit).
        textured: use the mesh's texture (requires uvs + texture).
        face_ids: also render the index of the visible face per pixel (an unlit pass with
            each face's index encoded in its colour).
        lights: directional lights, ``((direction, intensity), ...)``: each the direction its
            light travels (world space) and its strength (``_check_lights``; default meshfit's
            studio key light).
        ambient: the ambient light's strength.
        background: the colour behind the mesh, display RGB in [0, 1].
    """
    if len(cameras.batch_shape) != 1:
        raise ValueError(f"cameras must be a [N] batch; got batch shape {cameras.batch_shape}")
    pyrender = _pyrender()
    tm = _to_trimesh(mesh, textured)
    material = None
    if not textured and mesh.colors is None:
        material = pyrender.MetallicRoughnessMaterial(
            baseColorFactor=(*BASE_COLOR, 1.0),
            metallicFactor=0.0,
            roughnessFactor=1.0,
            doubleSided=True,
        )
    pmesh = pyrender.Mesh.from_trimesh(tm, material=material, smooth=True)
    for prim in pmesh.primitives:
        if prim.material is not None:
            prim.material.doubleSided = True
            if hasattr(prim.material, "metallicFactor"):
                prim.material.metallicFactor = 0.0
                prim.material.roughnessFactor = 1.0
    scene = pyrender.Scene(bg_color=(*background, 0.0), ambient_light=(ambient, ambient, ambient))
    scene.add(pmesh)
    for direction, intensity in _check_lights(lights):
        # pyrender's directional light shines along its node's -z axis.
        z = -np.asarray(direction)
        x = np.cross([0.0, 1.0, 0.0], z) if abs(z[1]) < 0.99 else np.cross([1.0, 0.0, 0.0], z)
        x /= np.linalg.norm(x)
        light_pose = np.eye(4)
        light_pose[:3, :3] = np.stack([x, np.cross(z, x), z], 1)
        scene.add(pyrender.DirectionalLight(color=np.ones(3), intensity=intensity), pose=light_pose)
    id_scene = None
    if face_ids:
        id_scene = pyrender.Scene(bg_color=(0.0, 0.0, 0.0, 0.0), ambient_light=(1.0, 1.0, 1.0))
        id_scene.add(_face_id_mesh(mesh, pyrender))

    _, poses = cameras.to_opengl(near, far)
    W, H = cameras.width, cameras.height
    flags = pyrender.RenderFlags.SKIP_CULL_FACES
    renderer = pyrender.OffscreenRenderer(W, H)
    rgb, depth, fids = [], [], []
    try:
        with _single_sample():
            for i in range(cameras.batch_shape[0]):
                # pyrender (OpenGL) puts pixel centres at +0.5; meshfit at 0.
                fx, fy = float(cameras.fx[i]), float(cameras.fy[i])
                cx, cy = float(cameras.cx[i]) + 0.5, float(cameras.cy[i]) + 0.5
                cam = pyrender.IntrinsicsCamera(fx, fy, cx, cy, znear=near, zfar=far)
                cam_node = scene.add(cam, pose=poses[i])
                color, z_img = renderer.render(scene, flags=flags)
                scene.remove_node(cam_node)
                rgb.append(np.array(color[..., :3]))
                depth.append(np.asarray(z_img, np.float32))
                if id_scene is not None:
                    cam_node = id_scene.add(cam, pose=poses[i])
                    c, _ = renderer.render(id_scene, flags=flags | pyrender.RenderFlags.FLAT)
                    id_scene.remove_node(cam_node)
                    c = c.astype(np.int32)
                    fids.append((c[..., 0] | (c[..., 1] << 8) | (c[..., 2] << 16)) - 1)
    finally:
        renderer.delete()
    depth = np.stack(depth)
    mask = depth > 0
    face_id = np.where(mask, np.stack(fids), -1).astype(np.int32) if face_ids else None
    return PyrenderViews(np.stack(rgb), mask, depth, face_id)


def _detections(mesh: Mesh, cams: Camera, marks, noise: float, outliers: float, seed: int):
    """Landmark detections [N, L, 2] (NaN = not found) as a detector would report the truth's
    landmarks, and the [view, landmark] pairs made outliers."""
    idx, bary, _ = marks
    v = np.asarray(mesh.vertices, np.float64)
    points = np.einsum("lk,lkd->ld", bary, v[idx])
    uv, depth = (np.asarray(a, np.float64) for a in cams.project(np.asarray(points, np.float32)))
    rng = np.random.default_rng([seed, 0x1A4D])
    uv = uv + rng.normal(0.0, noise, uv.shape) if noise else uv
    picked = rng.random(uv.shape[:2]) < outliers
    side = min(cams.width, cams.height)
    angle = rng.uniform(0, 2 * np.pi, uv.shape[:2])
    length = rng.uniform(0.05, 0.15, uv.shape[:2]) * side
    offset = np.stack([np.cos(angle), np.sin(angle)], -1) * length[..., None]
    uv = np.where(picked[..., None], uv + offset, uv)
    inside = (depth > 0) & (uv[..., 0] >= -0.5) & (uv[..., 0] <= cams.width - 0.5)
    inside &= (uv[..., 1] >= -0.5) & (uv[..., 1] <= cams.height - 0.5)
    uv[~inside] = np.nan
    return uv, [[int(n), int(k)] for n, k in zip(*np.nonzero(picked & inside))]


def _plates(path, views: int, width: int, height: int, seed: int) -> np.ndarray:
    """[N, H, W, 3] uint8: a crop of the image at ``path`` per view (a quarter of its area, at a
    seeded random place), resized to W x H."""
    from PIL import Image

    from meshfit.io.images import read_image

    image = read_image(path)
    image = np.repeat(image[..., :1], 3, -1) if image.shape[-1] < 3 else image[..., :3]
    image = np.clip(np.rint(image * 255), 0, 255).astype(np.uint8)
    h, w = image.shape[:2]
    ch, cw = max(1, h // 2), max(1, w // 2)
    rng = np.random.default_rng([seed, 0x9147E])
    out = []
    for _ in range(views):
        y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        crop = Image.fromarray(image[y : y + ch, x : x + cw])
        out.append(np.asarray(crop.resize((width, height), Image.BILINEAR)))
    return np.stack(out)


def synthesize(
    mesh: str | os.PathLike | Mesh,
    out: str | os.PathLike,
    *,
    views: int = 16,
    size: tuple[int, int] = (256, 256),
    seed: int = 0,
    textured: bool = False,
    texture: str | os.PathLike | None = None,
    distance: float | None = None,
    fov: float = 45.0,
    overwrite: bool = False,
    cameras: Camera | None = None,
    names: list[str] | None = None,
    landmarks: str | os.PathLike | None = None,
    landmark_noise: float = 0.0,
    landmark_outliers: float = 0.0,
    background: tuple[float, float, float] = (0.0, 0.0, 0.0),
    plate: str | os.PathLike | None = None,
    lights=DEFAULT_LIGHTS,
    ambient: float = AMBIENT,
) -> Path:
    """Render a mesh from ``views`` cameras spread on a sphere around it and write a dataset.

    With ``cameras`` (a [N] batch, e.g. a real rig's ``load_cameras``) it renders through those
    instead, at their own image size, with view ``names`` (default 000, 001, ...); ``views``,
    ``size``, ``seed``, ``distance`` and ``fov`` are then not used.

    The mesh keeps its own frame, units and vertex order; the rig is centred on its bounding-box
    centre, with ``distance`` (default: the bounding sphere just fits, 5% margin, in the narrower
    field of view) and the horizontal ``fov`` in degrees. ``seed`` turns the rig, so a seed
    always gives the same cameras and images. The folder appears complete or not at all.

    Args:
        mesh: a mesh file or a Mesh.
        out: dataset folder to create (must not exist or be empty, unless ``overwrite``).
        size: (W, H) in pixels.
        textured: render the mesh's texture (``texture`` may name an image file to bind).
        landmarks: a landmark definition file (``meshfit.io.load_landmark_definition``: e.g. the
            blendshapes.json of the model the mesh comes from) for the mesh's vertex order: also
            write ``landmarks/`` with the points projected into every view, plus Gaussian noise
            of ``landmark_noise`` pixels (sigma) and, in a ``landmark_outliers`` fraction of the
            detections, a detector's mistake (displaced 5-15% of the image's shorter side in a
            random direction; listed in scene.json). Points behind a camera or outside its
            image are written as not found.
        background: the colour behind the mesh in rgb/, display RGB in [0, 1] (default black).
        plate: an image file to render over instead (a photographed backdrop): each view gets a
            different crop of it (a quarter of its size, resized to the view's; the crop moves
            with the view, as a real backdrop seen from another camera), written to background/
            as that view's clean plate.
        lights: directional lights ``((direction, intensity), ...)``, 1 to 4: each the direction
            its light travels, in the mesh's frame, and its strength (default: meshfit's studio
            key light, ``render.lighting.LIGHT_DIRECTION`` at ``LIGHT_INTENSITY``; a fill light
            from the other side lights what the key light leaves to the ambient).
        ambient: the ambient light's strength (default ``AMBIENT``).
    Returns:
        The dataset folder.
    """
    src = str(mesh) if not isinstance(mesh, Mesh) else "<Mesh>"
    if cameras is not None:
        if len(cameras.batch_shape) != 1:
            raise ValueError(f"cameras must be a [N] batch; got batch shape {cameras.batch_shape}")
        views, size = cameras.batch_shape[0], (cameras.width, cameras.height)
        names = list(names) if names is not None else [f"{i:03d}" for i in range(views)]
        if len(names) != views:
            raise ValueError(f"{len(names)} names for {views} cameras")
    elif names is not None:
        raise ValueError("names= name the views of given cameras=")
    if not 1 <= views <= MAX_VIEWS:
        raise ValueError(f"views must be in 1..{MAX_VIEWS}; got {views}")
    W, H = size
    if not (1 <= W <= MAX_SIZE and 1 <= H <= MAX_SIZE):
        raise ValueError(f"size must be 1..{MAX_SIZE} pixels a side; got {W}x{H}")
    if not 0 < fov < 180:
        raise ValueError(f"fov is a horizontal field of view in degrees, in (0, 180); got {fov}")
    if distance is not None and not (np.isfinite(distance) and distance > 0):
        raise ValueError(f"distance must be a positive number; got {distance}")
    if not (np.isfinite(landmark_noise) and landmark_noise >= 0):
        raise ValueError(f"landmark_noise is a sigma in pixels (>= 0); got {landmark_noise}")
    if not 0 <= landmark_outliers <= 1:
        raise ValueError(f"landmark_outliers is a fraction in [0, 1]; got {landmark_outliers}")
    background = tuple(float(c) for c in background)
    if len(background) != 3 or not all(np.isfinite(c) and 0 <= c <= 1 for c in background):
        raise ValueError(f"background is an RGB colour with values in [0, 1]; got {background}")
    lights = _check_lights(lights)
    ambient = float(ambient)
    if not (np.isfinite(ambient) and ambient >= 0):
        raise ValueError(f"ambient must be a finite number >= 0; got {ambient}")
    if landmarks is None and (landmark_noise or landmark_outliers):
        raise ValueError("landmark noise and outliers need a landmark definition (--landmarks DEF)")
    inputs = [] if isinstance(mesh, Mesh) else [mesh]
    inputs += [] if texture is None else [texture]
    inputs += [] if landmarks is None else [landmarks]
    inputs += [] if plate is None else [plate]
    check_output_dir(out, overwrite=overwrite, inputs=inputs)
    plates = (
        None if plate is None else _plates(plate, len(names) if cameras is not None else views, W, H, seed)
    )
    if not isinstance(mesh, Mesh):
        mesh = load_mesh(mesh, texture=texture)
    elif texture is not None:
        raise ValueError("texture= binds an image file when loading; pass a Mesh with its texture instead")
    if textured and mesh.texture is None:
        raise ValueError(f"{src} has no texture; pass texture=IMAGE (CLI: --texture IMAGE) to bind one")
    marks = None
    if landmarks is not None:
        marks = load_landmark_definition(landmarks, np.asarray(mesh.faces), mesh.num_vertices)
    out = Path(out)
    center, radius = bounding_sphere(mesh.vertices)
    if radius <= 0:
        raise ValueError("mesh has zero extent")
    # fov is horizontal; the vertical one is narrower for landscape images.
    half = np.radians(fov) / 2
    half_min = min(half, np.arctan(np.tan(half) * H / W))
    if distance is None:
        distance = 1.05 * radius / np.sin(half_min)
    if distance <= radius:
        raise ValueError(
            f"distance {distance} puts cameras inside the mesh's bounding sphere (radius {radius:.4g})"
        )
    if cameras is None:
        near = max(distance - 1.05 * radius, 1e-3 * distance)
        far = distance + 1.05 * radius
        cams = sphere_rig(views, radius=distance, target=center, width=W, height=H, fov=fov, seed=seed)
        names = [f"{i:03d}" for i in range(views)]
    else:
        cams = cameras
        near, far = clip_range(cams, center, radius)
    with atomic_dir(out, overwrite=overwrite, inputs=inputs, kind="synth") as tmp:
        r = pyrender_views(mesh, cams, near=near, far=far, textured=textured, background=background,
                           lights=lights, ambient=ambient)  # fmt: skip
        rgb = r.rgb
        if plates is not None:
            # No multisampling: an edge pixel is object or plate, so laying it over afterwards is exact.
            rgb = np.where(r.mask[..., None], rgb, plates)
            write_views(tmp, names, background=plates)
        write_views(tmp, names, rgb=rgb, mask=r.mask, depth=r.depth)
        landmark_info = None
        if marks is not None:
            points, outliers = _detections(mesh, cams, marks, landmark_noise, landmark_outliers, seed)
            write_landmarks(tmp, names, points)
            landmark_info = {"source": str(landmarks), "count": int(points.shape[1]),
                             "noise_px": landmark_noise, "outlier_fraction": landmark_outliers,
                             "outliers": outliers}  # fmt: skip
        save_cameras(tmp / "cameras.json", cams, names=names, near=near, far=far)
        save_mesh(tmp / "mesh.obj", mesh)
        info = {
            "source": src, "views": views, "size": [W, H], "seed": seed, "fov": fov,
            "distance": distance if cameras is None else None, "target": center.tolist(),
            "cameras": "given" if cameras is not None else "sphere_rig", "bounding_radius": radius,
            "near": near, "far": far, "textured": textured, "background": list(background),
            "plate": None if plate is None else str(plate),
            "lights": [{"direction": d.round(6).tolist(), "intensity": i} for d, i in lights],
            "ambient": ambient,
            "renderer": "pyrender (OpenGL)", "landmarks": landmark_info,
        }  # fmt: skip
        (tmp / "scene.json").write_text(json.dumps(info, indent=1) + "\n")
    return out
