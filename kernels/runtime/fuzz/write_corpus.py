"""Write the fuzzer's seed corpus: small exported models (blendshapes and rigid; fp32, fp16, int8)
with untrained random weights, a few views at small sizes.

    python kernels/runtime/fuzz/write_corpus.py      # rewrites kernels/runtime/fuzz/corpus/
"""

from __future__ import annotations

import sys
from pathlib import Path

import jax
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))

import meshfit  # noqa: E402
from meshfit.amortize import Regressor, TrainConfig  # noqa: E402
from meshfit.amortize.run import _network_rig  # noqa: E402
from meshfit.amortize.task import Task  # noqa: E402
from meshfit.amortize.train import build_network  # noqa: E402
from meshfit.export.native import encode, runtime_tensors  # noqa: E402
from meshfit.models import BlendshapeModel  # noqa: E402


def _mesh() -> meshfit.Mesh:
    import trimesh

    s = trimesh.creation.icosphere(subdivisions=1)
    return meshfit.Mesh(np.asarray(s.vertices, np.float32) * [1.0, 0.6, 0.4], np.asarray(s.faces, np.int32))


def main() -> None:
    out = HERE / "corpus"
    out.mkdir(exist_ok=True)
    for old in out.glob("*.mfr"):
        old.unlink()
    mesh = _mesh()
    v = np.asarray(mesh.vertices)
    blend = BlendshapeModel(mesh.vertices, mesh.faces, np.stack([0.1 * v]).astype(np.float32),
                            np.stack([0.1 * v[:, ::-1]]).astype(np.float32), ("a",), ("b",))  # fmt: skip
    for kind, model, inputs in (("blendshapes", blend, ["mask", "grey", "depth"]), ("rigid", mesh, ["mask"])):
        network = {"width": 2, "stages": 2, "convs_per_stage": 2, "features": 8}
        cfg = TrainConfig.from_dict({"model": kind, "resolution": 16, "inputs": inputs, "network": network})
        rig = meshfit.sphere_rig(2, radius=4.0, width=32, height=32, fov=40, seed=1)
        task = Task.create(model, _network_rig(rig, cfg.resolution))
        net = build_network(cfg, task)
        params = jax.tree.map(lambda a: a + 0.1, net.init_params())
        reg = Regressor(out, cfg, model, rig, ["a", "b"], net, params, 0, {})
        for quant in ("fp32", "fp16", "int8"):
            (out / f"{kind}_{quant}.mfr").write_bytes(encode(*runtime_tensors(reg, quant)))
    print(f"wrote {len(list(out.glob('*.mfr')))} models to {out}")


if __name__ == "__main__":
    main()
