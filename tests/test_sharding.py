"""Many frames sharded over devices with jax's own sharding (shard_map over a device mesh):
the native kernels run per shard, and loss and gradients equal the single-device ones.

JAX fixes its device count at start-up, so this runs in a fresh process with
XLA_FLAGS=--xla_force_host_platform_device_count=4."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from tests.helpers import require_native

SCRIPT = textwrap.dedent(
    """
    import jax, jax.numpy as jnp, numpy as np, trimesh, meshfit
    from jax import shard_map
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    from meshfit.render import antialias, rasterize

    assert len(jax.devices()) == 4, jax.devices()
    s = trimesh.creation.icosphere(subdivisions=2)
    v0, f = jnp.asarray(s.vertices, jnp.float32), jnp.asarray(s.faces, jnp.int32)
    cams = meshfit.sphere_rig(3, radius=4.0, width=32, height=32, seed=0)
    frames = jnp.stack([v0 * (1 + 0.05 * i) for i in range(8)])  # [frames, V, 3]
    targets = jnp.full((8, 3, 32, 32), 0.3)

    def frame_loss(v, target):
        clip = cams.to_clip(v, 1.0, 8.0)
        frags = rasterize(clip, f, height=32, width=32)
        sil = antialias(frags.mask[..., None].astype(jnp.float32), frags, clip, f)[..., 0]
        return jnp.mean((sil - target) ** 2)

    def total(fr, tg):
        return jnp.sum(jax.vmap(frame_loss)(fr, tg))

    ref_loss, ref_grad = jax.jit(jax.value_and_grad(total))(frames, targets)
    mesh = Mesh(np.array(jax.devices()), ("frames",))
    sharded = shard_map(lambda fr, tg: jax.lax.psum(total(fr, tg), "frames"), mesh=mesh,
                        in_specs=(P("frames"), P("frames")), out_specs=P())
    put = lambda x: jax.device_put(x, NamedSharding(mesh, P("frames")))
    loss, grad = jax.jit(jax.value_and_grad(sharded))(put(frames), put(targets))
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
    np.testing.assert_allclose(grad, ref_grad, atol=1e-6)
    assert len(grad.sharding.device_set) == 4
    print("OK", float(loss))
    """
)


def test_frames_sharded_over_four_devices_match_one():
    require_native()  # the point is the native kernels inside shard_map
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().startswith("OK")
