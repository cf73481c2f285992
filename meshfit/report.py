"""The picture report of a fit, in ``report.html``, for a person to judge it at a glance.

``write_report(folder, result, views, rendered, metrics)`` writes into an existing folder (the
fit's output, which appears atomically as a whole)::

    report.html           headline figures and warnings first, then the pictures below
    overlays/NAME.png     target | fitted render | silhouette agreement (white both, red fit only,
                          blue target only) [| depth error], one per view (a sequence: per view of
                          its first, middle and last frames, FRAME_NAME.png), small images upscaled
    loss.png              the loss and each of its terms per step, log scale, stages marked
    sequence.png          a sequence: its per-frame parameters against the frame index
    turntable.gif         the fitted mesh turning, lit as meshfit synth lights its scenes
"""

from __future__ import annotations

import html
import json
import os
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from meshfit.io import Views, write_image
from meshfit.mesh import bounding_sphere
from meshfit.render.views import RenderedViews, render_views
from meshfit.rigs import orbit_rig

__all__ = ["write_report"]

MIN_OVERLAY_HEIGHT = 256  # smaller images are upscaled (nearest) so a person can see the pixels


def _depth_error(target_depth, fit_depth, fit_mask, scale: float) -> np.ndarray:
    """[H, W, 3] float: |depth error| where both are covered, from black (0) to yellow (>= scale);
    magenta where only one of them has depth."""
    both = (target_depth > 0) & fit_mask
    err = np.clip(np.abs(fit_depth - target_depth) / max(scale, 1e-12), 0, 1)
    img = np.zeros(target_depth.shape + (3,), np.float32)
    img[both] = np.stack([err[both], err[both] ** 0.5 * 0.9, np.zeros(both.sum())], -1)
    img[(target_depth > 0) ^ fit_mask] = (0.6, 0.1, 0.6)
    return img


def _overlay(target_rgb, target_mask, fit_rgb, fit_mask, depth_panel=None, marks=None) -> np.ndarray:
    """[H', k W', 3] uint8: target | fit [| agreement of the silhouettes] [| |target - fit| x 4
    where the fit covers] [| depth error].
    ``marks``: (detected [L, 2], fitted [L, 2]) landmarks, drawn on the target (NaN: none)."""
    panels = [target_rgb if target_rgb is not None else np.repeat(target_mask[..., None], 3, -1), fit_rgb]
    labels = ["target" + (" + landmarks" if marks is not None else ""), "fit"]
    if target_mask is not None:
        agree = np.zeros(fit_rgb.shape, np.float32)
        agree[target_mask & fit_mask] = 1.0
        agree[fit_mask & ~target_mask] = (1.0, 0.15, 0.1)
        agree[target_mask & ~fit_mask] = (0.1, 0.35, 1.0)
        panels.append(agree)
        labels.append("silhouettes")
    if target_rgb is not None:
        diff = np.abs(np.asarray(target_rgb, np.float32) - np.asarray(fit_rgb, np.float32))
        panels.append(np.where(fit_mask[..., None], np.clip(4 * diff, 0, 1), 0.0))
        labels.append("colour difference x4")
    if depth_panel is not None:
        panels.append(depth_panel)
        labels.append("depth error")
    img = np.clip(np.concatenate([np.asarray(p, np.float32) for p in panels], 1), 0, 1) * 255 + 0.5
    img = img.astype(np.uint8)
    up = int(np.ceil(MIN_OVERLAY_HEIGHT / img.shape[0]))
    img = np.repeat(np.repeat(img, up, 0), up, 1) if up > 1 else img
    if marks is not None:
        img = _draw_marks(img, marks, up)
    return _label(img, labels)


def _draw_marks(img: np.ndarray, marks, up: int) -> np.ndarray:
    """Detected landmarks as green crosses, the fitted model's as red dots, joined by a line."""
    from PIL import Image, ImageDraw

    pil = Image.fromarray(img)
    draw = ImageDraw.Draw(pil)
    scale = lambda p: ((p[0] + 0.5) * up - 0.5, (p[1] + 0.5) * up - 0.5)  # noqa: E731
    r = max(2, up)
    for det, fit in zip(*marks):
        ok_d, ok_f = np.isfinite(det).all(), np.isfinite(fit).all()
        if ok_d and ok_f:
            draw.line([scale(det), scale(fit)], fill=(255, 220, 0))
        if ok_f:
            x, y = scale(fit)
            draw.ellipse([x - r, y - r, x + r, y + r], fill=(230, 40, 30))
        if ok_d:
            x, y = scale(det)
            draw.line([x - r, y, x + r, y], fill=(40, 220, 60), width=2)
            draw.line([x, y - r, x, y + r], fill=(40, 220, 60), width=2)
    return np.asarray(pil)


def _label(img: np.ndarray, labels: list[str]) -> np.ndarray:
    """Each of the equal-width panels of ``img`` with its name in its top-left corner."""
    from PIL import Image, ImageDraw

    pil = Image.fromarray(img)
    draw = ImageDraw.Draw(pil)
    width = img.shape[1] // len(labels)
    for k, text in enumerate(labels):
        x, y = k * width + 4, 3
        box = draw.textbbox((x, y), text)
        draw.rectangle((box[0] - 2, box[1] - 1, box[2] + 2, box[3] + 1), fill=(40, 40, 40))
        draw.text((x, y), text, fill=(255, 255, 255))
    return np.asarray(pil)


def _loss_plot(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.6), dpi=100)
    start = 0
    colours = {}
    for entry in history:
        losses = entry["losses"]
        xs = np.arange(start, start + len(losses))
        if len(losses):
            ax.plot(xs, np.maximum(losses, 1e-12), lw=1.6, color="k",
                    label="total" if start == 0 else None)  # fmt: skip
            for name, values in entry.get("term_history", {}).items():
                label = None if name in colours else name  # one legend entry per term
                colour = colours.setdefault(name, f"C{len(colours)}")
                ax.plot(xs, np.maximum(values, 1e-12), lw=0.9, color=colour, label=label)
        ax.axvline(start, color="0.75", lw=0.8)
        label = f" {entry['name']} ({entry['resolution'][0]} px)"
        ax.text(start, 1.0, label, transform=ax.get_xaxis_transform(), fontsize=7, va="top", color="0.35")
        start += len(losses)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (weighted sum); terms unweighted")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="lower left", ncol=4)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _sequence_plot(params: dict, path: Path, frame_names: list[str] | None = None) -> None:
    """Per-frame parameters of a sequence against the frame index."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frames = params["frames"]
    panels = []
    if "expression" in frames[0]:
        names = list(frames[0]["expression"])
        panels.append(
            ("expression coefficients", names, [[f["expression"][n] for n in names] for f in frames])
        )
    if "rotation_axis_angle" in frames[0]:
        rot = np.degrees([f["rotation_axis_angle"] for f in frames])
        panels.append(("rotation (axis-angle, degrees)", ["x", "y", "z"], rot))
        panels.append(("translation", ["x", "y", "z"], [f["translation"] for f in frames]))
    else:  # rigid: the 4x4 object_to_world per frame
        from scipy.spatial.transform import Rotation

        M = np.asarray([f["object_to_world"] for f in frames], np.float64)
        scale = np.cbrt(np.linalg.det(M[:, :3, :3]))[:, None, None]
        rot = Rotation.from_matrix(M[:, :3, :3] / scale).as_rotvec(degrees=True)
        panels.append(("rotation (axis-angle, degrees)", ["x", "y", "z"], rot))
        panels.append(("translation", ["x", "y", "z"], M[:, :3, 3]))
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 2.2 * len(panels)), dpi=100, squeeze=False)
    for ax, (title, names, values) in zip(axes[:, 0], panels):
        values = np.asarray(values)
        for k, name in enumerate(names):
            ax.plot(values[:, k], lw=1.0, label=name if len(names) <= 12 else None)
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
        if len(names) <= 12:
            ax.legend(fontsize=6, ncol=6, loc="upper right")
    ticks = np.unique(np.linspace(0, len(frames) - 1, min(len(frames), 12)).round().astype(int))
    for ax in axes[:, 0]:
        ax.set_xticks(ticks, [str(frame_names[t]) for t in ticks] if frame_names else ticks)
    axes[-1, 0].set_xlabel("frame")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _turntable(mesh, path: Path, *, frames: int, size: int) -> None:
    from PIL import Image

    centre, radius = bounding_sphere(mesh.vertices)
    cams = orbit_rig(
        frames, radius=3.0 * radius, target=centre, elevation=20.0, width=size, height=size, fov=45.0
    )
    rgb = render_views(mesh, cams, textured=mesh.texture is not None).rgb  # a fitted texture shows
    imgs = [Image.fromarray((np.clip(im, 0, 1) * 255 + 0.5).astype(np.uint8)) for im in rgb]
    imgs[0].save(path, save_all=True, append_images=imgs[1:], duration=80, loop=0)


def _headline(metrics: dict) -> str:
    im = metrics["images"]
    rows = []
    if "mask_iou_mean" in im:
        rows.append(
            ("silhouette IoU, mean / min over views", f"{im['mask_iou_mean']:.4f} / {im['mask_iou_min']:.4f}")
        )
    lm = metrics.get("landmarks")
    if lm:
        rows.append(
            ("landmark error, median / mean (px)", f"{lm['error_px_median']:.2f} / {lm['error_px_mean']:.2f}")
        )
    if "depth_rmse" in im:
        rows.append(("depth RMSE (world units)", f"{im['depth_rmse']:.4g}"))
    g = metrics.get("ground_truth")
    if g:
        rows += [
            ("RMS point-to-mesh (unit-sphere units)", f"{g['rms_point_to_mesh']:.5f}"),
            ("normal consistency", f"{g['normal_consistency']:.4f}"),
            ("F-score at 1%", f"{g['fscore_1pct']:.4f}"),
        ]
        if "vertex_error_mean" in g:
            rows.append(("mean vertex error (file units)", f"{g['vertex_error_mean']:.4g}"))
    rows.append(("fit time (after compilation)", f"{metrics['seconds']:.1f} s, {metrics['steps']} steps"))
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    warn = "".join(f'<p class="warn">{html.escape(w)}</p>' for w in metrics.get("warnings", []))
    return f'<table class="head">{body}</table>{warn}'


def write_report(
    folder: str | os.PathLike,
    result,
    views: Views,
    rendered: RenderedViews | list[RenderedViews],
    metrics: dict,
    *,
    config: dict | None = None,
    turntable_frames: int = 24,
    model=None,
) -> Path:
    """Write the report of ``result`` (a ``meshfit.fitting.FitResult``) fitted to ``views``.

    ``rendered``: the fitted mesh rendered for every view (``render_views``), a list per frame
    for a sequence; ``metrics``: what metrics.json holds; ``model``: the fitted model, whose
    landmarks (if any) are drawn over the views' detections. Returns the path of ``report.html``."""
    folder = Path(folder)
    (folder / "overlays").mkdir(parents=True, exist_ok=True)
    sequence = views.frames is not None
    if sequence:
        T = len(views.frames)
        picks = sorted({0, T // 2, T - 1})
        per_frame = metrics["images"]["frames"]
    else:
        picks, rendered, per_frame = [None], [rendered], [metrics["images"]]
    depth_scale = 0.05 * bounding_sphere(result.mesh.vertices)[1]
    figures = []
    for t in picks:
        r = rendered[0 if t is None else t]
        ious = per_frame[0 if t is None else t].get("mask_iou")
        mesh = result.mesh if t is None else result.meshes[t]
        fitted_marks = None
        if views.landmarks is not None and getattr(model, "num_landmarks", 0) == views.landmarks.shape[-2]:
            fitted_marks = np.asarray(
                views.cameras.project(model.landmark_points(jnp.asarray(mesh.vertices)))[0]
            )
        for i, view in enumerate(views.names):
            index = i if t is None else (t, i)
            pick = lambda a, index=index: None if a is None else a[index]  # noqa: E731
            target_depth = pick(views.depth)
            depth_panel = None
            if target_depth is not None:
                depth_panel = _depth_error(np.asarray(target_depth), r.depth[i], r.mask[i], depth_scale)
            mask = None if views.mask is None else np.asarray(pick(views.mask)) > 0.5
            marks = None if fitted_marks is None else (np.asarray(pick(views.landmarks)), fitted_marks[i])
            fit_rgb = r.rgb[i]
            if views.background is not None:  # the fit over the view's plate
                fit_rgb = np.where(r.mask[i][..., None], fit_rgb, np.asarray(views.background[i]))
            img = _overlay(pick(views.rgb), mask, fit_rgb, r.mask[i], depth_panel, marks)
            name = Path(view).stem if t is None else f"{views.frames[t]}_{Path(view).stem}"
            write_image(folder / "overlays" / f"{name}.png", img)
            label = f"view {Path(view).stem}" + ("" if t is None else f", frame {views.frames[t]}")
            figures.append((name, label, None if ious is None else ious[i]))
    _loss_plot(result.history, folder / "loss.png")
    if sequence:
        _sequence_plot(result.params, folder / "sequence.png", views.frames)
    _turntable(result.mesh, folder / "turntable.gif", frames=turntable_frames, size=256)

    rows = "".join(
        f"<tr><td>{html.escape(h['name'])}</td><td>{h['resolution'][0]}x{h['resolution'][1]}</td><td>{h['faces']}</td>"
        f"<td>{h['steps']}</td><td>{h['seconds']:.1f}</td><td>{h['compile_seconds']:.1f}</td>"
        f"<td>{(h['losses'] or [float('nan')])[-1]:.4g}</td></tr>"
        for h in result.history
    )
    figs = "".join(
        f'<figure><img src="overlays/{html.escape(name)}.png"><figcaption>{html.escape(label)}'
        + ("" if iou is None else f": silhouette IoU {iou:.4f}")
        + "</figcaption></figure>"
        for name, label, iou in figures
    )
    colour_note = " | colour difference x4 where the fit covers"
    depth_note = " | depth error (black 0, yellow &ge; 5% of the radius; magenta: depth on one side only)"
    has_depth = views.depth is not None
    sil_note = " | silhouettes: white both, red fit only, blue target only"
    marks_note = ". Landmarks: green crosses detected, red dots the fitted model's"
    notes = "".join(
        note
        for note, shown in ((sil_note, views.mask is not None), (colour_note, views.rgb is not None),
                            (depth_note, has_depth),
                            (marks_note, views.landmarks is not None))
        if shown
    )  # fmt: skip
    sequence_html = '<h2>Sequence</h2><img src="sequence.png">' if sequence else ""
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>meshfit report</title>
<style>body{{font-family:sans-serif;max-width:1200px;margin:2em auto}}
img{{max-width:100%;image-rendering:pixelated}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}
table.head th{{text-align:left}}.warn{{background:#fde8e4;border-left:4px solid #d33;padding:6px 10px}}
figure{{margin:1em 0}}pre{{background:#f6f6f6;padding:8px;white-space:pre-wrap}}</style></head><body>
<h1>meshfit fit report</h1>
{_headline(metrics)}
<p>Data: <code>{html.escape(str(metrics.get("data", "")))}</code><br>
Command: <code>{html.escape(str(metrics.get("command") or "(library call)"))}</code></p>
<h2>Stages</h2><table><tr><th>stage</th><th>image</th><th>faces</th><th>steps</th><th>seconds</th>
<th>compile s</th><th>final loss</th></tr>{rows}</table>
<h2>Loss</h2><img src="loss.png">
{sequence_html}
<h2>Turntable</h2><img src="turntable.gif">
<h2>Views</h2><p>target | fit (meshfit's render; a photometric fit's with its albedo, light){notes}</p>{figs}
<h2>Metrics</h2><pre>{html.escape(json.dumps(metrics, indent=1))}</pre>
<h2>Parameters</h2><pre>{html.escape(json.dumps(result.params, indent=1))}</pre>
<h2>Config</h2><pre>{html.escape(json.dumps(config or {}, indent=1))}</pre>
</body></html>
"""
    (folder / "report.html").write_text(page)
    return folder / "report.html"
