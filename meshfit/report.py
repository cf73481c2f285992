"""The picture report of a fit: per-view overlays, loss curves, a turntable, in ``report.html``.

``write_report(folder, result, views, rendered, metrics)`` writes into an existing folder (the
CLI's output, which appears atomically as a whole)::

    report.html           the page, linking the pictures below
    overlays/NAME.png     target | fitted render | silhouette agreement (white both, red fit only,
                          blue target only), one per view (up to ``max_views``)
    loss.png              loss per step, log scale, stages marked
    turntable.gif         the fitted mesh turning, lit as meshfit synth lights its scenes
"""

from __future__ import annotations

import html
import json
import os
from pathlib import Path

import numpy as np

from meshfit.camera import orbit_rig
from meshfit.io import Views, write_image
from meshfit.render.views import RenderedViews, render_views

__all__ = ["write_report"]


def _overlay(target_rgb, target_mask, fit_rgb, fit_mask) -> np.ndarray:
    """[H, 3W, 3] uint8: target | fit | agreement of the silhouettes."""
    agree = np.zeros(fit_rgb.shape, np.float32)
    agree[target_mask & fit_mask] = 1.0
    agree[fit_mask & ~target_mask] = (1.0, 0.15, 0.1)
    agree[target_mask & ~fit_mask] = (0.1, 0.35, 1.0)
    if target_rgb is None:
        target_rgb = np.repeat(target_mask[..., None], 3, -1).astype(np.float32)
    return (np.clip(np.concatenate([target_rgb, fit_rgb, agree], 1), 0, 1) * 255 + 0.5).astype(np.uint8)


def _loss_plot(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.2), dpi=100)
    start = 0
    for entry in history:
        losses = entry["losses"]
        xs = np.arange(start, start + len(losses))
        if len(losses):
            ax.plot(
                xs, np.maximum(losses, 1e-12), lw=1.2, label=f"{entry['name']} ({entry['resolution'][0]} px)"
            )
        ax.axvline(start, color="0.8", lw=0.8)
        start += len(losses)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend(fontsize=8, loc="upper right")
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _turntable(mesh, path: Path, *, frames: int, size: int) -> None:
    from PIL import Image

    v = np.asarray(mesh.vertices, np.float64)
    centre = (v.min(0) + v.max(0)) / 2
    radius = float(np.linalg.norm(v - centre, axis=1).max())
    cams = orbit_rig(
        frames, radius=3.0 * radius, target=centre, elevation=20.0, width=size, height=size, fov=45.0
    )
    rgb = render_views(mesh, cams).rgb
    imgs = [Image.fromarray((np.clip(im, 0, 1) * 255 + 0.5).astype(np.uint8)) for im in rgb]
    imgs[0].save(path, save_all=True, append_images=imgs[1:], duration=80, loop=0)


def write_report(
    folder: str | os.PathLike,
    result,
    views: Views,
    rendered: RenderedViews,
    metrics: dict,
    *,
    config: dict | None = None,
    max_views: int = 8,
    turntable_frames: int = 24,
) -> Path:
    """Write the report of ``result`` (a ``meshfit.pipeline.FitResult``) fitted to ``views``.

    ``rendered``: the fitted mesh rendered for every view (``render_views``); ``metrics``: what
    metrics.json holds (its ``images`` from ``metrics.image_metrics``). Returns the path of
    ``report.html``."""
    folder = Path(folder)
    (folder / "overlays").mkdir(parents=True, exist_ok=True)
    n = min(len(views.names), max_views)
    pick = np.linspace(0, len(views.names) - 1, n).round().astype(int) if n else np.zeros(0, int)
    overlays = []
    for i in pick:
        name = Path(views.names[i]).stem
        target_rgb = None if views.rgb is None else views.rgb[i]
        img = _overlay(target_rgb, np.asarray(views.mask[i]) > 0.5, rendered.rgb[i], rendered.mask[i])
        write_image(folder / "overlays" / f"{name}.png", img)
        overlays.append((name, metrics["images"]["mask_iou"][i]))
    _loss_plot(result.history, folder / "loss.png")
    _turntable(result.mesh, folder / "turntable.gif", frames=turntable_frames, size=256)

    rows = "".join(
        f"<tr><td>{html.escape(h['name'])}</td><td>{h['resolution'][0]}x{h['resolution'][1]}</td><td>{h['faces']}</td>"
        f"<td>{h['steps']}</td><td>{h['seconds']:.1f}</td><td>{h['compile_seconds']:.1f}</td>"
        f"<td>{(h['losses'] or [float('nan')])[-1]:.4g}</td></tr>"
        for h in result.history
    )
    figs = "".join(
        f'<figure><img src="overlays/{html.escape(name)}.png"><figcaption>view {html.escape(name)}: '
        f"silhouette IoU {iou:.4f}</figcaption></figure>"
        for name, iou in overlays
    )
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>meshfit report</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}img{{max-width:100%}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}
figure{{margin:1em 0}}pre{{background:#f6f6f6;padding:8px}}</style></head><body>
<h1>meshfit fit report</h1>
<p>Overlays: target | fit (meshfit render) | silhouettes: white both, red fit only, blue target only.</p>
<h2>Stages</h2><table><tr><th>stage</th><th>image</th><th>faces</th><th>steps</th><th>seconds</th>
<th>compile s</th><th>final loss</th></tr>{rows}</table>
<h2>Loss</h2><img src="loss.png">
<h2>Turntable</h2><img src="turntable.gif">
<h2>Views</h2>{figs}
<h2>Metrics</h2><pre>{html.escape(json.dumps(metrics, indent=1))}</pre>
<h2>Parameters</h2><pre>{html.escape(json.dumps(result.params, indent=1))}</pre>
<h2>Config</h2><pre>{html.escape(json.dumps(config or {}, indent=1))}</pre>
</body></html>
"""
    (folder / "report.html").write_text(page)
    return folder / "report.html"
