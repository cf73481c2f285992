"""Benchmark meshfit's differentiable rasterizer, with the peers that install here side by side.

What is timed, per (faces, image size, views) configuration, on an icosphere of radius 1 seen
by ``sphere_rig(views, radius=3, fov=60, seed=0)`` cameras:

- **forward**: clip transform, rasterize (visibility + barycentrics + depth) and antialias of
  the silhouette, jitted.
- **forward+backward**: the same plus ``loss = mean((silhouette - target)^2) + mean((depth -
  target_depth)^2)`` and its gradient w.r.t. the vertices (``jax.value_and_grad``), jitted; the
  target is a render of the sphere scaled by 1.05, so every silhouette pixel pulls.

Figures are medians over ``--runs`` timed calls after one warm-up call; compile time (XLA's
``lower().compile()``) is measured apart. ``xla MB`` is XLA's compiled memory analysis (arguments +
outputs + temporaries; the native kernels' own scratch, tile lists and gradient buffers, is not
included). Run ``python bench/render.py --help`` for the options; the default is the full grid
{5k, 20k, 82k, 1.3M faces} x {256, 512, 1024}^2 x {1, 8} views, then the peers on the issue's
scene (20,480 faces, 8 views, 512^2).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp

sys.path.insert(0, str(Path(__file__).resolve().parent))

import meshfit  # noqa: E402
from meshfit.render import _native, antialias, rasterize  # noqa: E402

# icosphere subdivision levels -> faces: 4 -> 5,120; 5 -> 20,480; 6 -> 81,920; 8 -> 1,310,720
SUBDIVISIONS = {"5k": 4, "20k": 5, "82k": 6, "1.3M": 8}


def icosphere(level: int) -> tuple[jax.Array, jax.Array]:
    import trimesh

    s = trimesh.creation.icosphere(subdivisions=level)
    return jnp.asarray(s.vertices, jnp.float32), jnp.asarray(s.faces, jnp.int32)


def make_fns(faces, cams, size, backend):
    near, far = 1.0, 5.0

    def render(v):
        clip = cams.to_clip(v, near, far)
        frags = rasterize(clip, faces, height=size, width=size, backend=backend)
        sil = antialias(frags.mask[..., None].astype(jnp.float32), frags, clip, faces, backend=backend)
        return sil[..., 0], frags.depth

    def loss(v, target_sil, target_depth):
        sil, depth = render(v)
        return jnp.mean((sil - target_sil) ** 2) + jnp.mean((depth - target_depth) ** 2)

    return jax.jit(render), jax.jit(jax.value_and_grad(loss))


def time_fn(fn, *args, runs: int) -> dict:
    """Compile ahead of time (timed apart), warm up once, then the median of ``runs`` calls."""
    t0 = time.perf_counter()
    compiled = fn.lower(*args).compile()
    compile_s = time.perf_counter() - t0
    jax.block_until_ready(compiled(*args))
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - t0)
    try:
        mem = compiled.memory_analysis()
        xla_mb = (mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes) / 2**20
    except Exception:  # memory analysis is not available on every backend
        xla_mb = float("nan")
    return {"median_ms": 1e3 * statistics.median(times), "compile_ms": 1e3 * compile_s, "xla_mb": xla_mb}


def run_grid(faces_keys, sizes, views_list, runs, backend) -> list[dict]:
    rows = []
    for fk in faces_keys:
        v, f = icosphere(SUBDIVISIONS[fk])
        for size in sizes:
            for views in views_list:
                cams = meshfit.sphere_rig(views, radius=3.0, width=size, height=size, fov=60.0, seed=0)
                fwd, fwd_bwd = make_fns(f, cams, size, backend)
                r_f = time_fn(fwd, v, runs=runs)  # first: compile time before any cached compile
                target = fwd(v * 1.05)
                r_b = time_fn(fwd_bwd, v, *target, runs=runs)
                row = {
                    "faces": int(f.shape[0]), "size": size, "views": views,
                    "fwd_ms": r_f["median_ms"], "fwd_compile_ms": r_f["compile_ms"],
                    "fwdbwd_ms": r_b["median_ms"], "fwdbwd_compile_ms": r_b["compile_ms"],
                    "xla_mb": r_b["xla_mb"],
                }  # fmt: skip
                rows.append(row)
                print(
                    f"{row['faces']:>9,} faces {size:>5}^2 x{views}  fwd {row['fwd_ms']:9.1f} ms  "
                    f"fwd+bwd {row['fwdbwd_ms']:9.1f} ms  compile {row['fwd_compile_ms']:7.0f}/"
                    f"{row['fwdbwd_compile_ms']:7.0f} ms  xla {row['xla_mb']:8.1f} MB",
                    flush=True,
                )
    return rows


def markdown_table(rows: list[dict]) -> str:
    lines = [
        "| faces | size | views | forward ms | fwd+bwd ms | compile fwd / fwd+bwd ms | XLA MB |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['faces']:,} | {r['size']}² | {r['views']} | {r['fwd_ms']:.1f} | {r['fwdbwd_ms']:.1f} | "
            f"{r['fwd_compile_ms']:.0f} / {r['fwdbwd_compile_ms']:.0f} | {r['xla_mb']:.0f} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--faces", nargs="+", default=list(SUBDIVISIONS), choices=list(SUBDIVISIONS))
    p.add_argument("--sizes", nargs="+", type=int, default=[256, 512, 1024])
    p.add_argument("--views", nargs="+", type=int, default=[1, 8])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--backend", default="auto", choices=["auto", "native", "jax"])
    p.add_argument("--no-peers", action="store_true", help="skip Mitsuba / pyrender")
    p.add_argument("--peers", nargs="+", default=["mitsuba", "pyrender-egl", "pyrender-osmesa"])
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args(argv)

    dev = jax.devices()[0]
    print(
        f"meshfit {meshfit.__version__}, jax {jax.__version__}, device {dev.platform} ({dev.device_kind}), "
        f"{os.cpu_count()} CPUs, native kernels: {_native.available()}, backend={args.backend}, "
        f"python {platform.python_version()}",
        flush=True,
    )
    rows = run_grid(args.faces, args.sizes, args.views, args.runs, args.backend)
    print()
    print(markdown_table(rows))
    result = {"device": f"{dev.platform} ({dev.device_kind})", "backend": args.backend, "grid": rows}

    if not args.no_peers:
        import peers

        ref = next((r for r in rows if r["faces"] == 20480 and r["size"] == 512 and r["views"] == 8), None)
        print("\nPeers on the issue's scene (20,480-face icosphere, 8 views, 512^2, 60 deg FOV):", flush=True)
        peer_rows = {name: peers.measure(name, args.runs) for name in args.peers}
        result["peers"] = peer_rows
        for name, r in peer_rows.items():
            if not r:
                print(f"  {name}: not available")
                continue
            line = f"  {name}: forward {r['forward_ms']:.1f} ms"
            if ref:
                line += f" ({r['forward_ms'] / ref['fwd_ms']:.2f}x meshfit's {ref['fwd_ms']:.1f} ms)"
            if r.get("forward_backward_ms") is not None:
                line += f", forward+backward {r['forward_backward_ms']:.1f} ms"
                if ref:
                    ratio = r["forward_backward_ms"] / ref["fwdbwd_ms"]
                    line += f" ({ratio:.1f}x meshfit's {ref['fwdbwd_ms']:.1f} ms)"
            print(line, flush=True)
        print(f"  jaxrenderer: {peers.JAXRENDERER_NOTE}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=float) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
