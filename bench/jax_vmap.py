"""The pure-JAX rasterizer (what runs on a GPU) batched two ways: 16 views flat, and 4 frames x 4
views under ``vmap`` (how sequences render), jitted, Spot (the packaged 5.9k faces).

    python bench/jax_vmap.py                 # 128^2
    python bench/jax_vmap.py --size 256 --runs 5

Under ``vmap`` a ``lax.cond`` becomes a select that runs both branches, so a slow fallback guarded
by a cond would run on every call; the JAX path has none (it sizes its tile lists from the data).
The two batchings must cost about the same and give the same face ids. Prints the median of
``--runs`` timed calls after one compiling call (reported apart).
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import meshfit
from meshfit.render import rasterize

SPOT = Path(__file__).resolve().parents[1] / "meshfit" / "data" / "spot.obj"


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args(argv)
    mesh = meshfit.load_mesh(SPOT)
    centre, radius = meshfit.bounding_sphere(mesh.vertices)
    S = args.size
    cams = meshfit.sphere_rig(4, radius=3.2 * radius, target=centre, width=S, height=S, fov=50.0, seed=0)
    clip = cams.to_clip(mesh.vertices, 2.0 * radius, 4.4 * radius)  # [4 views, V, 4]
    frames = jnp.stack([clip] * 4)  # [4 frames, 4 views, V, 4]
    kw = dict(height=S, width=S, backend="jax")
    flat = jax.jit(lambda c: rasterize(c.reshape((-1,) + c.shape[-2:]), mesh.faces, **kw).face_id)
    batched = jax.jit(jax.vmap(lambda c: rasterize(c, mesh.faces, **kw).face_id))

    def timed(fn) -> tuple[float, float]:
        t0 = time.perf_counter()
        jax.block_until_ready(fn(frames))
        compile_s = time.perf_counter() - t0
        runs = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            jax.block_until_ready(fn(frames))
            runs.append(time.perf_counter() - t0)
        return float(np.median(runs)), compile_s

    same = bool((np.asarray(flat(frames)).reshape(4, 4, S, S) == np.asarray(batched(frames))).all())
    (t_flat, c_flat), (t_vmap, c_vmap) = timed(flat), timed(batched)
    machine = f"{platform.machine()}, {jax.default_backend()}, jax {jax.__version__}"
    print(f"# {machine}; Spot {mesh.num_faces} faces, {S}^2")
    print(f"16 views flat:           {1e3 * t_flat:7.0f} ms  (compile {c_flat:.1f} s)")
    print(f"4 frames x 4 views vmap: {1e3 * t_vmap:7.0f} ms  (compile {c_vmap:.1f} s)")
    print(f"vmap / flat: {t_vmap / t_flat:.2f}")
    print(f"same face ids: {same}")
    return {"flat_ms": 1e3 * t_flat, "vmap_ms": 1e3 * t_vmap, "same_ids": same}


if __name__ == "__main__":
    main()
