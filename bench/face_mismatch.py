"""Benchmark blendshape fits when the face is not in the model, against the best the model can do.

    python bench/face_mismatch.py                                   # ~4 min
    python bench/face_mismatch.py --landmarks 0 0.01 --noise 1 --outliers 0.05

The model: the shared ICT face region with identities 000-002 and its 8 expressions (and the
68 Multi-PIE landmarks of examples/ict_face_region.json). Cases: **in basis**, random identity
coefficients in [-1, 1] on 000-002; **out of basis**, identity003, which the model does not hold.
Both with random sparse expressions in [0, 0.7] and rendered by pyrender (``meshfit synth
--cameras configs/rig_face4.json``: 4 cameras at 256^2, with landmarks projected from the truth,
Gaussian noise ``--noise`` px and an ``--outliers`` fraction of detector mistakes). Each case is
fitted with the shipped ``face_blendshapes`` config (silhouette + depth), with the landmark term
of weight ``--landmarks`` added to every stage.

Error: mean vertex distance in % of the face region's bounding-box diagonal. Best possible: the
truth's least-squares projection onto the model (similarity pose and coefficients, expressions in
their [0, 1] bounds: scipy's bounded least squares). Ratio = fit /
best: 1 is as good as the model allows. In basis also the largest error of a fitted coefficient
(identity and expression) against the truth.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import meshfit  # noqa: E402
from meshfit.fitting import fit_views, load_config  # noqa: E402
from meshfit.fitting.config import FitConfig  # noqa: E402
from meshfit.models import BlendshapeModel  # noqa: E402

SPEC = REPO / "examples" / "ict_face_region.json"
HEAD = REPO.parent / "shared" / "data" / "ict_face" / "full" / "generic_neutral_mesh.obj"


def _model_spec(tmp: Path, identities: list[str]) -> Path:
    spec = json.loads(SPEC.read_text())
    root = SPEC.parent
    resolve = lambda p: str((root / p).resolve())  # noqa: E731
    spec["neutral"] = resolve(spec["neutral"])
    spec["identity"] = [resolve(p) for p in spec["identity"] if Path(p).stem in identities]
    spec["expression"] = [resolve(p) for p in spec["expression"]]
    path = tmp / f"model_{len(identities)}.json"
    path.write_text(json.dumps(spec))
    return path


def best_projection(model: BlendshapeModel, truth: np.ndarray, bounds=(0.0, 1.0)) -> np.ndarray:
    """The model's vertices nearest ``truth`` [V, 3]: least squares over a similarity pose and the
    coefficients, expressions within ``bounds`` (scipy's bounded trust-region least squares,
    started from an alternation of Procrustes and linear least squares)."""
    from scipy.optimize import least_squares, lsq_linear
    from scipy.spatial.transform import Rotation

    n = np.asarray(model.neutral, np.float64)
    B = np.concatenate([np.asarray(model.identity), np.asarray(model.expression)]).astype(np.float64)
    K, ni = B.shape[0], model.num_identity
    lo = np.r_[np.full(ni, -np.inf), np.full(K - ni, bounds[0])]
    hi = np.r_[np.full(ni, np.inf), np.full(K - ni, bounds[1])]
    c, A = np.zeros(K), B.reshape(K, -1).T
    for _ in range(10):
        shape = n + np.tensordot(c, B, 1)
        ms, mt = shape.mean(0), truth.mean(0)
        U, S, Vt = np.linalg.svd((truth - mt).T @ (shape - ms))
        D = np.diag([1, 1, np.sign(np.linalg.det(U @ Vt))])
        R = U @ D @ Vt
        s = np.trace(np.diag(S) @ D) / np.sum((shape - ms) ** 2)
        t = mt - s * R @ ms
        c = lsq_linear(A, (((truth - t) @ R) / s - n).reshape(-1), bounds=(lo, hi)).x

    def posed(x):
        shape = n + np.tensordot(x[7:], B, 1)
        return np.exp(x[3]) * shape @ Rotation.from_rotvec(x[:3]).as_matrix().T + x[4:7]

    x0 = np.r_[Rotation.from_matrix(R).as_rotvec(), np.log(s), t, np.clip(c, lo, hi)]
    big = np.full(7, np.inf)
    fit = least_squares(
        lambda x: (posed(x) - truth).reshape(-1), x0, bounds=(np.r_[-big, lo], np.r_[big, hi])
    )
    return posed(fit.x)


def place_in_head(head: np.ndarray, region: np.ndarray, k: int = 8) -> np.ndarray:
    """The full head's vertices [H, 3] with its first ``len(region)`` (the face region) set to
    ``region`` [R, 3], and the other parts (eyeballs, eyelashes, mouth, neck, back of the head)
    moved with the face: each by the inverse-distance-weighted displacement of its ``k`` nearest
    face-region vertices at rest. Only the neutral head exists in full, so without this the
    eyelashes and eyeballs stay where the neutral face has them and poke through or hang off
    the eyelids of another identity or a blink, and the neck cuts into another chin."""
    from scipy.spatial import cKDTree

    head = np.asarray(head, np.float64)
    rest = head[: len(region)]
    dist, idx = cKDTree(rest).query(head[len(region) :], k=k)
    w = 1.0 / np.maximum(dist, 1e-9) ** 2
    shift = np.einsum("hk,hkc->hc", w / w.sum(1, keepdims=True), np.asarray(region)[idx] - rest[idx])
    return np.concatenate([region, head[len(region) :] + shift])


# Display colours for the head's parts (its OBJ's materials), so that the test images look like a
# photographed face: skin, white eyes with dark irises, dark lashes, red mouth. The eye's
# transparent layers (tear film, blend and occlusion shells) are left out: drawn opaque they
# would ring the eyes.
PART_COLOURS = {
    "M_Face": (0.80, 0.62, 0.52), "M_BackHead": (0.80, 0.62, 0.52), "M_GumsTongue": (0.65, 0.30, 0.30),
    "M_Teeth": (0.90, 0.88, 0.80), "M_ScleraLeft": (0.92, 0.92, 0.90), "M_ScleraRight": (0.92, 0.92, 0.90),
    "M_IrisLeft": (0.25, 0.17, 0.10), "M_IrisRight": (0.25, 0.17, 0.10), "M_EyeLashes": (0.10, 0.08, 0.07),
}  # fmt: skip


def head_mesh(path: Path, *, colours: bool = False, leave_out=()) -> meshfit.Mesh:
    """The ICT full head from its OBJ, the vertices in their order (the face region first):
    with ``colours``, the parts in ``PART_COLOURS`` as vertex colours (the others left out);
    without, every part, uncoloured (synth's grey). ``leave_out``: materials to drop as well."""
    vertices, faces, colour_of = [], [], {}
    material = None
    drawn = lambda m: m not in leave_out and (not colours or m in PART_COLOURS)  # noqa: E731
    for line in path.read_text().splitlines():
        if line.startswith("v "):
            vertices.append([float(x) for x in line.split()[1:4]])
        elif line.startswith("usemtl"):
            material = line.split()[1]
        elif line.startswith("f ") and drawn(material):
            idx = [int(t.split("/")[0]) - 1 for t in line.split()[1:]]
            faces += [(idx[0], idx[k], idx[k + 1]) for k in range(1, len(idx) - 1)]
            if colours:
                colour_of.update(dict.fromkeys(idx, PART_COLOURS[material]))
    rgb = None
    if colours:
        rgb = np.full((len(vertices), 3), PART_COLOURS["M_Face"])
        rgb[list(colour_of)] = list(colour_of.values())
        rgb = rgb.astype(np.float32)
    return meshfit.Mesh(np.asarray(vertices, np.float32), np.asarray(faces, np.int32), colors=rgb)


def _weight(text: str) -> float | None:
    return None if text == "config" else float(text)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", type=int, default=2, help="frames per case (in basis, out of basis)")
    p.add_argument("--landmarks", type=_weight, nargs="+", default=[0.0, 0.01],
                   help="landmark weights to add to every stage ('config': as the config says)")  # fmt: skip
    p.add_argument("--noise", type=float, default=1.0, help="landmark noise, pixels (sigma)")
    p.add_argument("--outliers", type=float, default=0.05, help="fraction of landmark outliers")
    p.add_argument("--config", default="face_blendshapes")
    p.add_argument("--head", action="store_true",
                   help="render the whole ICT head (the face region placed into it) over a background, "
                   "and fit without masks or depth (for configs like face_rgb)")  # fmt: skip
    p.add_argument(
        "--colours",
        action="store_true",
        help="with --head: colour its parts (skin, eyes, lashes, mouth) instead of uniform grey",
    )
    p.add_argument("--leave-out", nargs="+", default=[], metavar="MATERIAL",
                   help="with --head: drop these parts (the OBJ's materials, e.g. M_EyeLashes)")  # fmt: skip
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config overrides")
    p.add_argument("--seed", type=int, default=5)
    p.add_argument("--only", choices=("in", "out"), help="only the in-basis or the out-of-basis case")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    print(f"# {platform.processor() or platform.machine()}, config {args.config}")
    rig, names = meshfit.load_cameras(REPO / "configs" / "rig_face4.json")
    rng = np.random.default_rng(args.seed)
    rows = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        full = BlendshapeModel.load(
            _model_spec(tmp, ["identity000", "identity001", "identity002", "identity003"])
        )
        spec = _model_spec(tmp, ["identity000", "identity001", "identity002"])
        model = BlendshapeModel.load(spec)
        diag = float(np.linalg.norm(np.ptp(np.asarray(model.neutral), 0)))
        base, _ = load_config(args.config, args.set)
        head = head_mesh(HEAD, colours=args.colours, leave_out=args.leave_out) if args.head else None
        cases = {None: ("in basis", "out of basis"), "in": ("in basis",), "out": ("out of basis",)}[args.only]
        for case in cases:
            if case == "out of basis" and args.only == "out":
                rng.random(args.cases * (3 + 2 * model.num_expression))  # the frames of a run of both
            for i in range(args.cases):
                ident = np.r_[rng.uniform(-1, 1, 3), 0.0] if case == "in basis" else np.r_[0.0, 0.0, 0.0, 1.0]
                expr = np.where(
                    rng.random(model.num_expression) < 0.5, rng.uniform(0, 0.7, model.num_expression), 0
                )
                truth = np.asarray(full.shape({"identity": ident, "expression": expr}), np.float64)
                data = tmp / f"{case.replace(' ', '_')}_{i}"
                shown = meshfit.Mesh(truth.astype(np.float32), model.faces)
                marks = spec
                if head is not None:
                    shown = meshfit.Mesh(
                        place_in_head(head.vertices, truth).astype(np.float32), head.faces, colors=head.colors
                    )
                    marks = tmp / "head_marks.json"
                    marks.write_text(json.dumps({"landmarks": json.loads(spec.read_text())["landmarks"]}))
                backdrop = (0.25, 0.3, 0.35) if head is not None else (0.0, 0.0, 0.0)
                meshfit.synthesize(shown, data, cameras=rig, names=names, landmarks=marks,
                                   landmark_noise=args.noise, landmark_outliers=args.outliers,
                                   seed=args.seed + i, background=backdrop)  # fmt: skip
                views = meshfit.load_views(data)
                if head is not None:
                    views = views._replace(mask=None, depth=None)
                best = best_projection(model, truth)
                best_err = 100 * float(np.linalg.norm(best - truth, axis=1).mean()) / diag
                for w in args.landmarks:
                    cfg = json.loads(json.dumps(base))
                    for stage in cfg["stages"] if w is not None else []:
                        stage.setdefault("weights", {"silhouette": 1.0})["landmarks"] = w
                    result = fit_views(FitConfig.from_dict(cfg), views, model=model, progress=False)
                    fit = np.asarray(result.mesh.vertices, np.float64)
                    err = 100 * float(np.linalg.norm(fit - truth, axis=1).mean()) / diag
                    secs = sum(h["seconds"] for h in result.history)
                    fitted = np.r_[
                        list(result.params["identity"].values()), list(result.params["expression"].values())
                    ]
                    coeff_err = (
                        float(np.abs(fitted - np.r_[ident[:3], expr]).max()) if case == "in basis" else None
                    )
                    rows.append({"case": case, "frame": i, "landmarks": w, "error_pct": err,
                                 "best_pct": best_err, "ratio": err / best_err, "seconds": secs,
                                 "coefficient_error_max": coeff_err,
                                 "coefficient_errors": None if coeff_err is None
                                 else (fitted - np.r_[ident[:3], expr]).round(4).tolist()})  # fmt: skip
                    coeff = f", coefficients within {coeff_err:.3f}" if coeff_err is not None else ""
                    print(f"{case} #{i} landmarks {w}: {err:.4f}% (best {best_err:.4f}%, "
                          f"ratio {err / best_err:.2f}{coeff}) in {secs:.1f} s", flush=True)  # fmt: skip
    print("\n| case | landmark weight | vertex error % diag (mean) | best possible % | ratio (mean) "
          "| coefficients, max abs error | s |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|")
    for case in cases:
        for w in args.landmarks:
            r = [x for x in rows if x["case"] == case and x["landmarks"] == w]
            # In basis the best is ~0 (the truth is in the model's span): no ratio.
            ratio = f"{np.mean([x['ratio'] for x in r]):.2f}" if case == "out of basis" else "—"
            coeffs = f"{max(x['coefficient_error_max'] for x in r):.3f}" if case == "in basis" else "—"
            print(f"| {case} | {w} | {np.mean([x['error_pct'] for x in r]):.4f} "
                  f"| {np.mean([x['best_pct'] for x in r]):.4f} | {ratio} | {coeffs} "
                  f"| {np.mean([x['seconds'] for x in r]):.1f} |")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
