"""Benchmark a rigid photometric fit's appearance models: a UV texture against per-vertex albedo.

    python bench/texture.py                      # Spot, 8 views at 96^2, ~2 min
    python bench/texture.py --size 128 --texture 128

The shared Spot (textured) is turned 5.8 deg and rendered by meshfit with its texture under an
SH light through ``--views`` cameras; both fits start at the untouched pose, fit the albedo and
the light, then pose, albedo and light (photometric + silhouette + albedo TV), from the same
start and steps. Reported: the rotation error, PSNR of held-out views (4 other cameras) against
the truth's renders, the fit's time after compilation, and for the texture its error over the
texels the UV layout covers (after the best per-channel scale: albedo times light is all a view
sees).
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import meshfit  # noqa: E402
from meshfit.fitting import FitConfig  # noqa: E402
from meshfit.io import save_cameras, write_views  # noqa: E402
from meshfit.models import so3_exp  # noqa: E402
from meshfit.render import rasterize, render_views  # noqa: E402
from meshfit.render.lighting import srgb_to_linear  # noqa: E402

SPOT = REPO.parent / "shared" / "data" / "spot"
LIGHT = np.zeros((9, 3))
LIGHT[:4] = [[2.8] * 3, [0.6] * 3, [0.9] * 3, [-0.4] * 3]
SH = {"model": "sh", "coefficients": LIGHT.tolist()}


def config(appearance: str, size: int) -> FitConfig:
    albedo = "texture" if appearance == "texture" else "albedo"
    return FitConfig.from_dict({"model": "rigid", "appearance": appearance, "texture_size": size, "stages": [
        {"name": "appearance", "steps": 60, "lr": 0.05, "params": [albedo, "light"],
         "weights": {"photometric": 1.0}},
        {"name": "pose", "steps": 150, "lr": 0.02, "lr_decay": 0.1,
         "weights": {"photometric": 1.0, "silhouette": 1.0, "albedo_tv": 0.001}}]})  # fmt: skip


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--views", type=int, default=8)
    p.add_argument("--size", type=int, default=96, help="image side, pixels")
    p.add_argument("--texture", type=int, default=64, help="fitted texture side, texels")
    args = p.parse_args(argv)
    machine = platform.processor() or platform.machine()
    print(f"# {machine}, {jax.devices()[0].platform}, jax {jax.__version__}")
    mesh = meshfit.load_mesh(SPOT / "spot_triangulated.obj", texture=SPOT / "spot_texture.png")
    R = np.asarray(so3_exp(jnp.asarray([0.05, -0.08, 0.04], jnp.float32)))
    posed = meshfit.Mesh(np.asarray(mesh.vertices) @ R.T, mesh.faces, uvs=mesh.uvs, uv_faces=mesh.uv_faces,
                         texture=mesh.texture)  # fmt: skip
    cams = meshfit.sphere_rig(args.views, radius=3.5, width=args.size, height=args.size, fov=40.0, seed=4)
    held = meshfit.sphere_rig(4, radius=3.5, width=args.size, height=args.size, fov=40.0, seed=9)
    truth = render_views(posed, held, near=1.5, far=6.0, textured=True, light=SH).rgb
    S = args.texture
    uv = jnp.asarray(mesh.uvs)
    zero = jnp.zeros_like(uv[:, 0])
    clip = jnp.stack([2 * uv[:, 0] - 1, 1 - 2 * uv[:, 1], zero, zero + 1], -1)
    covered = np.asarray(rasterize(clip[None], jnp.asarray(mesh.uv_faces), height=S, width=S).face_id[0] >= 0)
    true_tex = srgb_to_linear(jax.image.resize(jnp.asarray(mesh.texture[..., :3]), (S, S, 3), "linear"))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        names = [f"{i:03d}" for i in range(args.views)]
        r = render_views(posed, cams, near=1.5, far=6.0, textured=True, light=SH)
        write_views(data, names, rgb=r.rgb, mask=r.mask)
        save_cameras(data / "cameras.json", cams, names=names, near=1.5, far=6.0)
        views = meshfit.load_views(data)
        for appearance in ("texture", "vertex"):
            t = time.perf_counter()
            res = meshfit.fit_views(config(appearance, S), views, model=mesh, progress=False)
            wall = time.perf_counter() - t
            M = np.asarray(res.params["object_to_world"])[:3, :3]
            angle = float(np.degrees(np.arccos(np.clip((np.trace(M @ R.T) - 1) / 2, -1, 1))))
            fit = render_views(res.mesh, held, near=1.5, far=6.0, textured=appearance == "texture",
                               light=res.params["light"]).rgb  # fmt: skip
            psnr = float(10 * np.log10(1 / np.mean((fit - truth) ** 2)))
            tex_err = ""
            if appearance == "texture":
                f = np.asarray(srgb_to_linear(jnp.asarray(res.mesh.texture)))[covered]
                tr = np.asarray(true_tex)[covered]
                k = (f * tr).sum(0) / np.maximum((f * f).sum(0), 1e-12)
                tex_err = f"{np.sqrt(np.mean((f * k - tr) ** 2)):.3f}"
            seconds = sum(h["seconds"] for h in res.history)
            compile_s = sum(h["compile_seconds"] for h in res.history)
            rows.append((appearance, angle, psnr, tex_err, seconds, compile_s, wall))
    print(f"Spot, {args.views} views at {args.size}^2, texture {S}^2, started 5.8 deg off\n")
    print("| albedo | rotation error deg | held-out PSNR dB | texture RMS (covered texels, scaled) "
          "| fit s (compile s) | whole call s |\n|---|---:|---:|---:|---:|---:|")  # fmt: skip
    for a, angle, psnr, tex_err, s, c, w in rows:
        name = f"UV texture {S}²" if a == "texture" else f"per-vertex ({mesh.num_vertices:,} vertices)"
        print(f"| {name} | {angle:.3f} | {psnr:.2f} | {tex_err or '–'} | {s:.1f} ({c:.1f}) | {w:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
