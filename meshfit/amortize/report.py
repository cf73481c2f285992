"""The report of a training run, ``RUN/report.html``: curves, validation tables, and overlays of
predicted against true meshes on validation samples (rendered by meshfit through the rig)."""

from __future__ import annotations

import html
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from meshfit.amortize.validation import evaluate, summarize
from meshfit.io import write_image
from meshfit.render import rasterize

__all__ = ["write_train_report"]

_OVERLAYS = 6


def _curves(log: Path, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train, val = [], []
    for line in log.read_text().splitlines() if log.is_file() else []:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        (val if "validation" in rec else train).append(rec)
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    if train:
        steps = [r["step"] for r in train]
        for k in train[0]:
            if k not in ("step", "lr", "samples_per_s", "seconds", "grad_norm") and train[0][k] is not None:
                axes[0].plot(steps, [r.get(k) for r in train], label=k)
        axes[0].set_yscale("log")
        axes[0].set_xlabel("step")
        axes[0].set_title("training loss (per log interval)")
        axes[0].legend(fontsize=8)
    if val:
        steps = [r["step"] for r in val]
        for k, label in (("vertex_pct", "vertex error, % of diagonal"), ("rotation_deg", "rotation, degrees"),
                         ("centre_pct", "centre, % of diameter")):  # fmt: skip
            axes[1].plot(
                steps, [r["validation"][k]["mean"] for r in val], marker=".", label=f"{label} (mean)"
            )
        axes[1].set_yscale("log")
        axes[1].set_xlabel("step")
        axes[1].set_title("validation (pyrender renders)")
        axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _silhouettes(task, vertices: np.ndarray) -> np.ndarray:
    """[S, N, h, w] bool: meshfit renders of vertices [S, V, 3] through the task's rig."""
    rig = task.rig
    clip = jax.vmap(lambda v: rig.to_clip(v, *task.planes))(jnp.asarray(vertices))
    return np.asarray(rasterize(clip, task.faces, height=rig.height, width=rig.width).mask)


def write_train_report(out: Path, network, params: dict, val: dict, summary: dict) -> Path:
    """Write RUN/report.html (and curves.png, overlays/) for the parameters ``params``."""
    out = Path(out)
    task = network.task
    _curves(out / "metrics.jsonl", out / "curves.png")
    ev = evaluate(network, params, val)
    table = summarize(ev["errors"])
    pick = np.argsort(ev["errors"]["vertex_pct"])
    picks = sorted(
        {int(pick[0]), int(pick[len(pick) // 2]), int(pick[-1])} | set(range(min(_OVERLAYS - 3, len(pick))))
    )
    take = lambda tree: jax.tree.map(lambda a: jnp.asarray(a[np.asarray(picks)]), tree)  # noqa: E731
    vt = np.asarray(jax.vmap(task.vertices)(take(val["truth"])))
    vp = np.asarray(jax.vmap(task.vertices)(take(ev["pred"])))
    st, sp = _silhouettes(task, vt), _silhouettes(task, vp)
    (out / "overlays").mkdir(exist_ok=True)
    grey_at = list(network.config.inputs).index("grey") if "grey" in network.config.inputs else 0
    figures = []
    for j, i in enumerate(picks):
        rows = []
        for v in range(task.rig.batch_shape[0]):
            inp = np.clip(val["inputs"][i, v, :, :, grey_at], 0, 1)
            agree = np.zeros(st.shape[2:] + (3,), np.float32)
            agree[st[j, v] & sp[j, v]] = 1.0
            agree[sp[j, v] & ~st[j, v]] = (1.0, 0.15, 0.1)
            agree[st[j, v] & ~sp[j, v]] = (0.1, 0.35, 1.0)
            rows.append(np.concatenate([np.repeat(inp[..., None], 3, -1), agree], 1))
        img = np.concatenate(rows, 1)
        up = max(1, 256 // img.shape[0])
        img = np.repeat(np.repeat(img, up, 0), up, 1)
        write_image(
            out / "overlays" / f"sample{i:04d}.png", (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
        )
        e = {k: float(ev["errors"][k][i]) for k in ev["errors"]}
        figures.append((i, e))
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{v['mean']:.4g}</td><td>{v['median']:.4g}</td><td>{v['p95']:.4g}</td></tr>"
        for k, v in table.items()
    )
    figs = "".join(
        f'<figure><img src="overlays/sample{i:04d}.png"><figcaption>validation sample {i}: vertex error '
        f"{e['vertex_pct']:.3f}% of the diagonal, rotation {e['rotation_deg']:.2f} deg, centre "
        f"{e['centre_pct']:.2f}% of the diameter</figcaption></figure>"
        for i, e in figures
    )
    net = summary.get("network", {})
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>meshfit training report</title>
<style>body{{font-family:sans-serif;max-width:1200px;margin:2em auto}}
img{{max-width:100%;image-rendering:pixelated}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}
pre{{background:#f6f6f6;padding:8px;white-space:pre-wrap}}</style></head><body>
<h1>meshfit training report: {html.escape(summary.get("representation", ""))}</h1>
<p>{summary.get("steps")} steps in {summary.get("seconds", 0):.0f} s
({summary.get("samples_per_s", 0):.1f} samples/s,
compile {summary.get("compile_seconds", 0):.1f} s); network: {net.get("parameters", 0):,} parameters,
{net.get("flops", 0) / 1e6:.1f} MFLOPs per frame of {len(summary.get("views", []))} views.</p>
<h2>Validation ({len(pick)} pyrender samples, never trained on)</h2>
<table><tr><th>error</th><th>mean</th><th>median</th><th>95th pct</th></tr>{rows}</table>
<p>vertex_pct: mean vertex distance in % of the model's bounding-box diagonal; rotation_deg: the
rotation's error in degrees; centre_pct: the object's centre in % of its diameter.</p>
<h2>Training</h2><img src="curves.png">
<h2>Predicted against true</h2><p>Per view: the input (grey, or mask) | silhouettes of the truth
and the prediction (white both, red prediction only, blue truth only). The best, median and worst
samples are among them.</p>{figs}
<h2>Run</h2><pre>{html.escape(json.dumps(summary, indent=1))}</pre>
</body></html>
"""
    (out / "report.html").write_text(page)
    return out / "report.html"
