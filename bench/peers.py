"""Time the peer renderers (Mitsuba 3, pyrender) on meshfit's fixed benchmark scene.

The scene (``scene()``): a 20,480-face icosphere (``trimesh.creation.icosphere(subdivisions=5)``,
radius 1, centred at the origin) seen by 8 cameras at 512x512 with a 60 degree horizontal field
of view, from ``meshfit.sphere_rig(8, radius=3.0, width=512, height=512, fov=60.0, seed=0)``.

Each ``time_*`` function takes that scene (vertices, faces, cameras), builds the peer's own scene
once (reported as ``setup_ms``), warms it up (reported as ``compile_ms``: the first call, JIT /
shader compilation included, minus the steady-state median), and then times ``runs`` repetitions
of rendering *all* views; the figures are medians in milliseconds for all views together. A
peer that is not installed (or cannot start) gives ``None`` and prints the reason.

``bench/render.py`` imports this module for its side-by-side table. As a script it runs every
peer in a fresh subprocess (the OpenGL platform is fixed per process, and each peer gets the
machine's threads and memory to itself) and prints a table::

    python bench/peers.py                       # all peers, 5 timed runs each
    python bench/peers.py --peer mitsuba --runs 7 --json
    python bench/peers.py --check               # Mitsuba vs pyrender coverage, same cameras

Install the peers with ``pip install mitsuba`` (plus Debian's ``libllvm19`` for the ``llvm_*``
variants) and ``pyrender-maintained`` (a meshfit dependency; EGL or OSMesa). See
``bench/README.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from meshfit import Camera, sphere_rig

__all__ = [
    "JAXRENDERER_NOTE",
    "PEERS",
    "check_alignment",
    "measure",
    "scene",
    "time_mitsuba",
    "time_pyrender",
]

# The fixed scene (see the module docstring).
SUBDIVISIONS = 5
NUM_VIEWS = 8
SIZE = 512
FOV = 60.0
DISTANCE = 3.0
SEED = 0
# Clip planes around the unit sphere seen from distance 3 (camera-space z of the sphere is in [2, 4]).
NEAR, FAR = 1.0, 5.0
# The target of the Mitsuba gradient benchmark: the same sphere, shifted by this much (world units).
TARGET_SHIFT = (0.05, 0.03, -0.02)

# Peer name -> what ``measure`` runs. "mitsuba": silhouette-like (only the environment is seen
# directly, the mesh is black); "mitsuba-direct": direct lighting (one bounce, the mesh is shaded).
PEERS = ("mitsuba", "mitsuba-direct", "pyrender-egl", "pyrender-osmesa")

JAXRENDERER_NOTE = (
    "jaxrenderer 0.3.2 (latest on PyPI) pins jax<0.5, jaxlib<0.5 and numpy<2; meshfit needs "
    "jax>=0.10.2 and numpy 2, so it cannot share meshfit's environment (its wheel itself allows "
    "Python >=3.8,<4, so a separate environment would work). Not timed."
)


def scene() -> tuple[np.ndarray, np.ndarray, Camera]:
    """The benchmark scene.

    Returns:
        vertices: [V=10242, 3] float32, world space, the unit icosphere centred at the origin.
        faces: [F=20480, 3] int32, counter-clockwise seen from outside.
        cameras: batch shape (8,), 512x512, 60 degree horizontal field of view, OpenCV convention,
            3 units from the origin, looking at it.
    """
    import trimesh

    sphere = trimesh.creation.icosphere(subdivisions=SUBDIVISIONS, radius=1.0)
    vertices = np.asarray(sphere.vertices, np.float32)
    faces = np.asarray(sphere.faces, np.int32)
    cameras = sphere_rig(NUM_VIEWS, radius=DISTANCE, width=SIZE, height=SIZE, fov=FOV, seed=SEED)
    return vertices, faces, cameras


def _ms(seconds: float) -> float:
    return round(1e3 * seconds, 2)


def _extra_ms(first: float, median_ms: float) -> float:
    """How much longer the first call took than the median (JIT / shader compilation), >= 0."""
    return max(0.0, _ms(first - median_ms / 1e3))


def _machine() -> dict[str, Any]:
    """CPU count and 1-minute load average at the end of a timing (other jobs skew the figures)."""
    return {"cpus": os.cpu_count(), "load_avg_1min": round(os.getloadavg()[0], 2)}


def _time(fn: Callable[[], object], runs: int) -> tuple[float, list[float], float]:
    """Call ``fn`` ``runs`` times, in milliseconds: the median wall time, every wall time, and the
    median CPU time of this process (all its threads; unlike wall time, it hardly changes when
    other jobs compete for the cores)."""
    wall, cpu = [], []
    for _ in range(runs):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return _ms(statistics.median(wall)), [_ms(d) for d in wall], _ms(statistics.median(cpu))


# ---- Mitsuba 3 ------------------------------------------------------------------------------------


def _mitsuba_sensor(mi: Any, cameras: Camera, i: int, spp: int, *, centre_samples: bool) -> Any:
    """A Mitsuba ``perspective`` sensor with camera ``i``'s intrinsics and pose.

    Mitsuba's camera looks along +z with +y up and +x to the image *left*, i.e. it is the OpenCV
    camera turned by 180 degrees about z. Its pixel (i, j) covers [i, i + 1] x [j, j + 1] in film
    coordinates, which with a centred principal point is meshfit's pixel grid (centre at
    (W - 1) / 2); the field of view spans the image edges, so fov_x = 2 atan(W / (2 fx)).
    """
    W, H = cameras.width, cameras.height
    fx, fy = float(cameras.fx[i]), float(cameras.fy[i])
    cx, cy = float(cameras.cx[i]), float(cameras.cy[i])
    if abs(fx - fy) > 1e-4 * fx or abs(cx - (W - 1) / 2) > 1e-4 or abs(cy - (H - 1) / 2) > 1e-4:
        raise ValueError(
            f"the Mitsuba sensor here supports square pixels and a centred principal point; camera {i} "
            f"has fx={fx}, fy={fy}, cx={cx}, cy={cy} for {W}x{H}"
        )
    camera_to_world = np.linalg.inv(np.asarray(cameras.world_to_camera[i], np.float64))
    to_world = camera_to_world @ np.diag([-1.0, -1.0, 1.0, 1.0])
    if centre_samples:  # one sample exactly at every pixel centre
        sampler = {"type": "stratified", "sample_count": 1, "jitter": False}
    else:
        sampler = {"type": "independent", "sample_count": spp}
    return {
        "type": "perspective",
        "fov": float(np.degrees(2 * np.arctan(W / (2 * fx)))),
        "fov_axis": "x",
        "near_clip": NEAR,
        "far_clip": FAR,
        "to_world": mi.ScalarTransform4f(to_world.tolist()),
        "sampler": sampler,
        "film": {
            "type": "hdrfilm",
            "width": W,
            "height": H,
            "pixel_format": "rgb",
            "rfilter": {"type": "box"},
            # Mitsuba's projective integrators ask for it (shapes moving across the image border).
            "sample_border": True,
        },
    }


def _mitsuba_scene(
    mi: Any,
    vertices: np.ndarray,
    faces: np.ndarray,
    cameras: Camera,
    *,
    spp: int,
    integrator: dict[str, Any],
    centre_samples: bool = False,
) -> Any:
    """The mesh (diffuse, reflectance 0.5) under a constant white environment, one sensor per view."""
    props = mi.Properties()
    props["bsdf"] = mi.load_dict({"type": "diffuse", "reflectance": {"type": "rgb", "value": 0.5}})
    mesh = mi.Mesh("mesh", len(vertices), len(faces), props=props, has_vertex_normals=False)
    params = mi.traverse(mesh)
    params["vertex_positions"] = mi.Float(np.asarray(vertices, np.float32).ravel())
    params["faces"] = mi.UInt32(np.asarray(faces, np.uint32).ravel())
    params.update()
    desc: dict[str, Any] = {
        "type": "scene",
        "integrator": integrator,
        "light": {"type": "constant", "radiance": {"type": "rgb", "value": 1.0}},
        "mesh": mesh,
    }
    for i in range(cameras.batch_shape[0]):
        desc[f"view{i:02d}"] = _mitsuba_sensor(mi, cameras, i, spp, centre_samples=centre_samples)
    return mi.load_dict(desc)


def _import_mitsuba(variant: str) -> Any | None:
    try:
        import mitsuba as mi

        mi.set_variant(variant)
    except Exception as e:  # ImportError, or a variant whose LLVM / CUDA library is missing
        print(f"mitsuba: not available ({type(e).__name__}: {e})", file=sys.stderr)
        return None
    return mi


def time_mitsuba(
    vertices: np.ndarray,
    faces: np.ndarray,
    cameras: Camera,
    runs: int = 5,
    *,
    spp: int = 1,
    max_depth: int = 1,
    sppi: int = 0,
    variant: str = "llvm_ad_rgb",
) -> dict[str, Any] | None:
    """Time Mitsuba 3 (``prb_projective``) on the scene: forward, and forward + backward.

    The mesh is diffuse (reflectance 0.5) under a constant white environment. ``max_depth=1``
    (default) renders only what is seen directly, so the mesh is a black silhouette on white and
    every vertex gradient comes from projective sampling of the silhouette edges; ``max_depth=2``
    adds direct lighting (a noisy grey disc). Each view has its own ``perspective`` sensor (the
    meshfit camera's intrinsics and pose) and is rendered at ``spp`` samples per pixel; ``spp``
    also sets ``prb_projective``'s sppc and sppp (continuous and primary-visibility gradient
    samples). ``sppi`` (indirect-visibility samples) is 0 by default: a convex mesh has no
    indirect silhouettes, and with ``sppi > 0`` Mitsuba builds its guiding octree in every
    backward pass (about 11 s per view here, and it warns that none were found).

    forward: ``mi.render`` of every view without gradients, images read back to numpy.
    forward + backward: gradients enabled on the vertex positions (scene update included), then
    for every view: render, loss = mean squared difference to a fixed target image (the sphere
    shifted by ``TARGET_SHIFT``, rendered once at 16 spp during setup), ``dr.backward``; then the
    [V, 3] vertex gradient (summed over the views) is read back to numpy.

    Args:
        vertices: [V, 3] float, world space. faces: [F, 3] int. cameras: batch shape (N,).
        runs: timed repetitions after one warm-up.
        spp: samples per pixel. max_depth: path length (1: silhouette, 2: direct lighting).
        sppi: indirect-visibility gradient samples per pixel.
        variant: Mitsuba variant (``llvm_ad_rgb`` on CPU, ``cuda_ad_rgb`` on an NVIDIA GPU).
    Returns:
        None if Mitsuba (or the variant) is unavailable, else a dict with forward_ms,
        forward_backward_ms (medians over ``runs``, all views), the individual runs, the median
        CPU times (forward_cpu_ms, forward_backward_cpu_ms: all threads), setup_ms
        (scene construction), target_render_ms, compile_ms for each (first call minus the median),
        sanity figures (vertices with a non-zero gradient; cosine between the summed descent
        direction and the target shift, near 1 when the gradient is right) and a note.
    """
    mi = _import_mitsuba(variant)
    if mi is None:
        return None
    import drjit as dr

    n = cameras.batch_shape[0]
    t0 = time.perf_counter()
    integrator = {"type": "prb_projective", "max_depth": max_depth, "sppi": sppi}
    scn = _mitsuba_scene(mi, vertices, faces, cameras, spp=spp, integrator=integrator)
    setup = time.perf_counter() - t0
    t0 = time.perf_counter()
    params = mi.traverse(scn)
    key = "mesh.vertex_positions"
    rest = mi.Float(params[key])
    shifted = (np.asarray(vertices, np.float32) + np.asarray(TARGET_SHIFT, np.float32)).ravel()
    params[key] = mi.Float(shifted)
    params.update()
    targets = [mi.TensorXf(np.array(mi.render(scn, sensor=i, spp=16, seed=1000 + i))) for i in range(n)]
    params[key] = rest
    params.update()
    dr.eval(targets)
    target_time = time.perf_counter() - t0

    def forward() -> list[np.ndarray]:
        return [np.array(mi.render(scn, sensor=i, spp=spp, seed=i)) for i in range(n)]

    def forward_backward() -> np.ndarray:
        dr.enable_grad(params[key])
        params.update()
        for i in range(n):
            image = mi.render(scn, params, sensor=i, spp=spp, seed=i)
            dr.backward(dr.mean(dr.square(image - targets[i]), axis=None))
        grad = np.array(dr.grad(params[key])).reshape(-1, 3)
        dr.disable_grad(params[key])
        params.update()
        return grad

    t0 = time.perf_counter()
    images = forward()
    first_forward = time.perf_counter() - t0
    forward_ms, forward_runs, forward_cpu = _time(forward, runs)
    t0 = time.perf_counter()
    grad = forward_backward()
    first_fb = time.perf_counter() - t0
    fb_ms, fb_runs, fb_cpu = _time(forward_backward, runs)

    mean_inside = float(np.mean([img[img.shape[0] // 2, img.shape[1] // 2] for img in images]))
    # Sanity: descending the gradient should move the sphere towards the target (cosine near 1).
    descent, shift = -grad.sum(0), np.asarray(TARGET_SHIFT)
    cosine = float(descent @ shift / (np.linalg.norm(descent) * np.linalg.norm(shift) + 1e-30))
    return {
        "peer": "mitsuba",
        "version": mi.__version__,
        "backend": f"{variant} (LLVM {'.'.join(map(str, dr.detail.llvm_version()))}), "
        f"prb_projective, sppi={sppi}, {dr.thread_count()} threads",
        "views": n,
        "size": [cameras.width, cameras.height],
        "spp": spp,
        "max_depth": max_depth,
        "sppi": sppi,
        "forward_ms": forward_ms,
        "forward_backward_ms": fb_ms,
        "forward_runs_ms": forward_runs,
        "forward_backward_runs_ms": fb_runs,
        "forward_cpu_ms": forward_cpu,
        "forward_backward_cpu_ms": fb_cpu,
        "setup_ms": _ms(setup),
        "target_render_ms": _ms(target_time),
        "compile_ms": {
            "forward": _extra_ms(first_forward, forward_ms),
            "forward_backward": _extra_ms(first_fb, fb_ms),
        },
        "grad_nonzero_vertices": int(np.count_nonzero(np.abs(grad).sum(1))),
        "grad_descent_cosine": round(cosine, 3),
        "centre_pixel_mean": round(mean_inside, 3),
        "machine": _machine(),
        "note": "ray tracing, per-view mi.render; forward+backward includes the scene update "
        "(acceleration structure rebuild) after enabling gradients; Dr.Jit caches compiled kernels "
        "on disk (~/.drjit), so compile_ms is small after the first process ever",
    }


# ---- pyrender (OpenGL) ------------------------------------------------------------------------


class _NoMultisampling:
    """Turn pyrender's 4x MSAA off while active (as ``meshfit.synth`` does for its references).

    pyrender enables multisampling for its colour passes and exposes no switch; EGL honours it,
    OSMesa does not. Off, every pixel samples the scene at its centre on both platforms.
    """

    def __enter__(self) -> None:
        import pyrender.renderer as pr
        from OpenGL.GL import GL_MULTISAMPLE

        self._pr, self._enable = pr, pr.glEnable
        pr.glEnable = lambda cap: pr.glDisable(cap) if cap == GL_MULTISAMPLE else self._enable(cap)

    def __exit__(self, *exc: object) -> None:
        self._pr.glEnable = self._enable


def _opengl_platform() -> str | None:
    """The PyOpenGL platform this process is bound to (None if OpenGL is not imported yet)."""
    if "OpenGL.platform" not in sys.modules:
        return None
    return type(sys.modules["OpenGL.platform"].PLATFORM).__name__.lower().replace("platform", "")


# pyrender settings timed, headline first: flat (unlit colour + depth, the silhouette-like setting),
# depth (depth buffer only), shaded (lit, as meshfit.synth renders its references).
PYRENDER_MODES = ("flat", "depth", "shaded")


def time_pyrender(
    vertices: np.ndarray,
    faces: np.ndarray,
    cameras: Camera,
    runs: int = 5,
    *,
    platform: str | None = None,
) -> dict[str, Any] | None:
    """Time pyrender (OpenGL, forward only, not differentiable) on the scene, in three settings.

    The mesh is drawn as ``meshfit.synth.pyrender_views`` draws it: smooth vertex normals, a grey
    metallic-roughness material, one directional light plus ambient, two-sided (no culling),
    multisampling off. One ``OffscreenRenderer`` renders every view (a camera node added,
    rendered, removed), and every render reads its images back to numpy:

    - ``flat`` (the headline ``forward_ms``): ``RenderFlags.FLAT``, unlit base colour [H, W, 3]
      uint8 + depth [H, W] float32; the silhouette-like setting, like Mitsuba's default here.
    - ``depth``: ``RenderFlags.DEPTH_ONLY``, depth [H, W] float32 only (coverage = depth > 0).
    - ``shaded``: lit colour + depth, the fragment shader pyrender uses for meshfit's references.

    Args:
        vertices: [V, 3] float, world space. faces: [F, 3] int. cameras: batch shape (N,).
        runs: timed repetitions of each setting after one warm-up.
        platform: ``"egl"`` or ``"osmesa"``; default ``$PYOPENGL_PLATFORM``, else ``"egl"``. The
            platform is fixed when OpenGL is first imported, so one process can time only one
            (``measure`` runs each in its own subprocess).
    Returns:
        None if pyrender or the platform is unavailable, else a dict with forward_ms (the ``flat``
        median over ``runs``, all views), modes ({setting: {forward_ms, forward_runs_ms,
        forward_cpu_ms, compile_ms}}), setup_ms (GL context + scene), compile_ms (first render of all views
        in each setting, shader compilation and mesh upload, minus its median) and a note.
    """
    platform = platform or os.environ.get("PYOPENGL_PLATFORM") or "egl"
    bound = _opengl_platform()
    if bound is not None and bound != platform:
        print(f"pyrender-{platform}: OpenGL is already bound to {bound} in this process", file=sys.stderr)
        return None
    os.environ["PYOPENGL_PLATFORM"] = platform
    t0 = time.perf_counter()
    try:
        import OpenGL.GL as gl
        import pyrender
        import trimesh

        renderer = pyrender.OffscreenRenderer(cameras.width, cameras.height)
    except Exception as e:  # ImportError, or no EGL / OSMesa library or device
        print(f"pyrender-{platform}: not available ({type(e).__name__}: {e})", file=sys.stderr)
        return None
    try:
        tm = trimesh.Trimesh(np.asarray(vertices, np.float64), np.asarray(faces), process=False)
        material = pyrender.MetallicRoughnessMaterial(
            baseColorFactor=(0.75, 0.75, 0.75, 1.0), metallicFactor=0.0, roughnessFactor=1.0, doubleSided=True
        )
        scn = pyrender.Scene(bg_color=(0.0, 0.0, 0.0, 0.0), ambient_light=(0.3, 0.3, 0.3))
        scn.add(pyrender.Mesh.from_trimesh(tm, material=material, smooth=True))
        scn.add(pyrender.DirectionalLight(color=np.ones(3), intensity=3.0), pose=np.eye(4))
        _, poses = cameras.to_opengl(NEAR, FAR)
        # OpenGL puts pixel centres at +0.5, meshfit at 0.
        fx, fy = np.asarray(cameras.fx, np.float64), np.asarray(cameras.fy, np.float64)
        cx, cy = np.asarray(cameras.cx, np.float64) + 0.5, np.asarray(cameras.cy, np.float64) + 0.5
        gl_cameras = [
            pyrender.IntrinsicsCamera(fx[i], fy[i], cx[i], cy[i], znear=NEAR, zfar=FAR)
            for i in range(len(fx))
        ]
        setup = time.perf_counter() - t0
        flags = pyrender.RenderFlags
        mode_flags = {
            "flat": flags.SKIP_CULL_FACES | flags.FLAT,
            "depth": flags.SKIP_CULL_FACES | flags.DEPTH_ONLY,
            "shaded": flags.SKIP_CULL_FACES,
        }

        def forward(mode: str) -> list[Any]:
            out = []
            for cam, pose in zip(gl_cameras, poses):
                node = scn.add(cam, pose=pose)
                out.append(renderer.render(scn, flags=mode_flags[mode]))
                scn.remove_node(node)
            return out

        modes: dict[str, dict[str, Any]] = {}
        with _NoMultisampling():
            for mode in PYRENDER_MODES:
                t0 = time.perf_counter()
                images = forward(mode)
                first = time.perf_counter() - t0
                median, all_runs, cpu = _time(lambda mode=mode: forward(mode), runs)
                modes[mode] = {
                    "forward_ms": median,
                    "forward_runs_ms": all_runs,
                    "forward_cpu_ms": cpu,
                    "compile_ms": _extra_ms(first, median),
                }
                if mode == "depth":
                    coverage = float(np.mean([(depth > 0).mean() for depth in images]))
        gl_name = _gl_renderer(gl)
    finally:
        renderer.delete()
    return {
        "peer": f"pyrender-{platform}",
        "version": _version("pyrender-maintained") or _version("pyrender"),
        "backend": f"{platform}, {gl_name}",
        "views": len(gl_cameras),
        "size": [cameras.width, cameras.height],
        "forward_ms": modes["flat"]["forward_ms"],
        "forward_backward_ms": None,
        "modes": modes,
        "setup_ms": _ms(setup),
        "compile_ms": {mode: m["compile_ms"] for mode, m in modes.items()},
        "coverage": round(coverage, 4),
        "machine": _machine(),
        "note": "rasterization (Mesa llvmpipe / softpipe on CPU), images read back per view; "
        "not differentiable",
    }


def _gl_renderer(gl: Any) -> str:
    """GL_RENDERER of the context pyrender last made (e.g. llvmpipe), or '' once it is gone."""
    try:
        name = gl.glGetString(gl.GL_RENDERER)
    except Exception:
        return ""
    return name.decode() if isinstance(name, bytes) else ""


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


# ---- alignment check --------------------------------------------------------------------------


def check_alignment(vertices: np.ndarray, faces: np.ndarray, cameras: Camera) -> dict[str, Any] | None:
    """Compare Mitsuba's and pyrender's coverage masks of the shifted sphere, view by view.

    Checks that the Mitsuba sensors reproduce the meshfit cameras: Mitsuba renders one sample at
    every pixel centre (``aov`` depth), pyrender (whatever OpenGL platform this process has)
    renders its depth; the sphere is shifted off-centre so that a flipped axis would show.

    Returns:
        None if either peer is missing, else {"mismatched_pixels": [per view], "fraction": float}.
    """
    mi = _import_mitsuba("llvm_ad_rgb")
    if mi is None:
        return None
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
    from meshfit import Mesh
    from meshfit.synth import pyrender_views

    shifted = np.asarray(vertices, np.float32) + np.asarray(TARGET_SHIFT, np.float32) * 4
    aov = {"type": "aov", "aovs": "z:depth"}
    scn = _mitsuba_scene(mi, shifted, faces, cameras, spp=1, integrator=aov, centre_samples=True)
    mi_mask = np.stack([np.array(mi.render(scn, sensor=i))[..., -1] > 0 for i in range(len(cameras))])
    gl_mask = pyrender_views(Mesh(shifted, np.asarray(faces, np.int32)), cameras, near=NEAR, far=FAR).mask
    wrong = (mi_mask != gl_mask).reshape(len(cameras), -1).sum(1)
    return {
        "mismatched_pixels": wrong.tolist(),
        "covered_pixels": gl_mask.reshape(len(cameras), -1).sum(1).tolist(),
        "fraction": float(wrong.sum() / gl_mask.size),
    }


# ---- driver ---------------------------------------------------------------------------------------


def _run_here(peer: str, runs: int) -> dict[str, Any] | None:
    vertices, faces, cameras = scene()
    if peer in ("mitsuba", "mitsuba-direct"):
        return time_mitsuba(vertices, faces, cameras, runs, max_depth=1 if peer == "mitsuba" else 2)
    if peer.startswith("pyrender-"):
        return time_pyrender(vertices, faces, cameras, runs, platform=peer.removeprefix("pyrender-"))
    raise ValueError(f"unknown peer {peer!r}; expected one of {PEERS}")


def measure(peer: str, runs: int = 5, *, timeout: float = 1800.0) -> dict[str, Any] | None:
    """Time one peer (one of ``PEERS``) in a fresh Python subprocess; its dict, or None.

    A subprocess gives each OpenGL platform its own process and keeps the peers' thread pools,
    JIT state and memory apart. Its messages (why a peer is missing) pass through to stderr.
    """
    if peer not in PEERS:
        raise ValueError(f"unknown peer {peer!r}; expected one of {PEERS}")
    cmd = [sys.executable, os.path.abspath(__file__), "--peer", peer, "--runs", str(runs), "--json"]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        print(f"{peer}: subprocess failed with exit code {proc.returncode}", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _table(results: dict[str, dict[str, Any] | None]) -> str:
    """One row per peer and setting: medians for all views, setup, first-call extra (compile), and
    the 1-minute load average / CPUs when the peer finished (above 1 per CPU, others were running)."""

    def cell(x: float | None) -> str:
        return "-" if x is None else f"{x:,.1f}"

    def both(wall: float, cpu: float) -> str:
        return f"{wall:,.0f} ({cpu:,.0f})"

    def load_of(r: dict[str, Any]) -> str:
        return f"{r['machine']['load_avg_1min']:.1f}/{r['machine']['cpus']}"

    header = (
        "peer",
        "setting",
        "fwd ms (cpu)",
        "fwd+bwd ms (cpu)",
        "setup ms",
        "compile ms",
        "load",
        "backend",
    )
    rows = [header]
    for peer, r in results.items():
        if r is None:
            rows.append((peer, "", "n/a", "n/a", "", "", "", "not available (see stderr)"))
        elif "modes" in r:  # pyrender: one row per setting; setup, load and backend on the first
            for k, (mode, m) in enumerate(r["modes"].items()):
                shared = (cell(r["setup_ms"]), load_of(r), r["backend"]) if k == 0 else ("", "", "")
                fwd = both(m["forward_ms"], m["forward_cpu_ms"])
                rows.append((peer, mode, fwd, "-", shared[0], cell(m["compile_ms"]), *shared[1:]))
        else:
            setting = f"spp {r['spp']}, max_depth {r['max_depth']}"
            fwd = both(r["forward_ms"], r["forward_cpu_ms"])
            fwd_bwd = both(r["forward_backward_ms"], r["forward_backward_cpu_ms"])
            compile_ms = " / ".join(cell(v) for v in r["compile_ms"].values())
            rows.append(
                (peer, setting, fwd, fwd_bwd, cell(r["setup_ms"]), compile_ms, load_of(r), r["backend"])
            )
    rows.append(
        ("jaxrenderer", "", "n/a", "n/a", "", "", "", "cannot share meshfit's env (jax<0.5, numpy<2)")
    )
    widths = [max(len(row[k]) for row in rows) for k in range(len(header) - 1)]
    lines = []
    for row in rows:
        cells = [c.ljust(w) if k < 2 else c.rjust(w) for k, (c, w) in enumerate(zip(row, widths))]
        lines.append("  ".join([*cells, row[-1]]))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peer", choices=("all", *PEERS), default="all")
    parser.add_argument("--runs", type=int, default=5, help="timed runs after one warm-up (default 5)")
    parser.add_argument("--json", action="store_true", help="print the result dict(s) as JSON")
    parser.add_argument("--check", action="store_true", help="compare Mitsuba and pyrender coverage")
    args = parser.parse_args(argv)
    if args.check:
        print(json.dumps(check_alignment(*scene())))
        return 0
    if args.peer != "all":
        print(json.dumps(_run_here(args.peer, args.runs)))
        return 0
    results = {peer: measure(peer, args.runs) for peer in PEERS}
    if args.json:
        print(json.dumps(results))
    else:
        print(
            f"peers: icosphere {20 * 4**SUBDIVISIONS:,} faces, {NUM_VIEWS} views {SIZE}x{SIZE}, "
            f"fov {FOV:g}, median of {args.runs} runs (all views per run)"
        )
        print(_table(results))
        installed = _version("jaxrenderer")
        print(
            f"jaxrenderer ({'installed ' + installed if installed else 'not installed'}): {JAXRENDERER_NOTE}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
