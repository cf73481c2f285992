"""A training run's folder, the training loop that fills it, and the trained ``Regressor``.

RUN holds::

    .meshfit              marker: meshfit made this folder (--overwrite may replace it)
    run.json              format version, representation, network size and cost, the rig's
                          centre, the object's radius, what the run was made from
    config.yaml           the resolved TrainConfig
    rig.json              the rig's cameras (meshfit's cameras.json, at their own resolution)
    model.npz | model.obj the blendshape model or the known mesh (a run needs no other file)
    validation.npz        the pyrender validation set (rendered once, at the start)
    metrics.jsonl         one line per log interval (loss, terms, lr, samples/s) and per
                          validation (errors: mean, median, 95th percentile)
    checkpoints/last/     orbax checkpoints of the last ``checkpoint.keep`` saves
    checkpoints/best/     the checkpoint with the lowest validation vertex error
    base/                 a correcting network's (``--corrects RUN``): RUN's config.yaml and
                          the weights of its best checkpoint (params.npz)
    report.html           training curves, validation tables, predicted-vs-truth overlays

A killed run (Ctrl-C, kill -9, a lost machine) continues with ``resume=True``
(``meshfit train ... --resume``) from its last checkpoint, repeating exactly the steps an
uninterrupted run would have taken.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import yaml

from meshfit.amortize.config import TrainConfig
from meshfit.amortize.task import Task
from meshfit.amortize.train import (
    Network,
    build_network,
    lr_schedule,
    make_optimizer,
    make_train_step,
    truncate_jsonl,
    write_jsonl,
)
from meshfit.amortize.validation import (
    evaluate,
    load_validation,
    render_validation,
    save_validation,
    summarize,
)
from meshfit.camera import Camera
from meshfit.config import to_dict
from meshfit.io import (
    MARKER,
    OutputError,
    atomic_path,
    check_output_dir,
    load_cameras,
    load_mesh,
    save_cameras,
    save_mesh,
)
from meshfit.mesh import Mesh
from meshfit.models import BlendshapeModel

__all__ = ["RUN_FORMAT", "Regressor", "train"]

RUN_FORMAT = 1


def _network_rig(rig: Camera, resolution: int) -> Camera:
    """The rig at the network's resolution: longest side ``resolution``, the aspect kept."""
    s = resolution / max(rig.width, rig.height)
    return rig.resized(max(1, round(rig.width * s)), max(1, round(rig.height * s)))


def _checkpointers(run: Path, keep: int):
    import orbax.checkpoint as ocp

    def manager(name, **kw):
        options = ocp.CheckpointManagerOptions(enable_async_checkpointing=False, create=True,
                                               cleanup_tmp_directories=True, **kw)  # fmt: skip
        return ocp.CheckpointManager((run / "checkpoints" / name).resolve(), options=options)

    return manager("last", max_to_keep=keep), manager(
        "best", max_to_keep=1, best_fn=lambda m: m["vertex_pct"], best_mode="min"
    )


_SEAL = "meshfit_sha256.json"


def _files(folder: Path) -> dict[str, Path]:
    return {
        str(f.relative_to(folder)): f for f in sorted(folder.rglob("*")) if f.is_file() and f.name != _SEAL
    }


def _seal(manager, step: int) -> None:
    """Record the SHA-256 of every file of a saved checkpoint: a damaged one is then named
    before orbax reads it (orbax's readers fail deep inside, or not at all, on a truncated file)."""
    import hashlib

    folder = Path(manager.directory) / str(step)
    sums = {name: hashlib.sha256(f.read_bytes()).hexdigest() for name, f in _files(folder).items()}
    with atomic_path(folder / _SEAL) as tmp:
        tmp.write_text(json.dumps(sums, indent=0) + "\n")


def _verify(manager, step: int) -> None:
    """Raise ValueError naming the first file of a sealed checkpoint that is missing or changed
    (a checkpoint saved just before a kill may be unsealed: orbax's own commit marks it whole)."""
    import hashlib

    folder = Path(manager.directory) / str(step)
    seal = folder / _SEAL
    if not seal.is_file():
        return
    try:
        sums = json.loads(seal.read_text())
    except ValueError as e:
        raise ValueError(
            f"cannot read the checkpoint of step {step} in {folder.parent}: {seal.name} is damaged ({e})"
        ) from e
    files = _files(folder)
    for name, digest in sums.items():
        f = files.get(name)
        if f is None or hashlib.sha256(f.read_bytes()).hexdigest() != digest:
            what = "is missing" if f is None else "has changed (truncated or overwritten)"
            raise ValueError(f"cannot read the checkpoint of step {step} in {folder.parent}: {name} {what}")


def _restore(manager, step: int, like: dict) -> dict:
    import orbax.checkpoint as ocp

    _verify(manager, step)
    try:
        return manager.restore(step, args=ocp.args.StandardRestore(like))
    except Exception as e:  # orbax raises many kinds; the user needs the path and the cause
        raise ValueError(f"cannot read the checkpoint of step {step} in {manager.directory}: {e}") from e


@dataclasses.dataclass
class Regressor:
    """A trained regressor, loaded from a run folder (``Regressor.load(RUN)``).

    config: its TrainConfig. model: the BlendshapeModel or known Mesh it predicts. rig: [N] the
    cameras it was trained for (their own resolution); names: their view names. network: the
    pure functions (``train.Network``); params: the weights; step: the training step they are
    from; info: run.json.
    """

    path: Path
    config: TrainConfig
    model: BlendshapeModel | Mesh
    rig: Camera
    names: list[str]
    network: Network
    params: dict
    step: int
    info: dict

    @property
    def task(self) -> Task:
        return self.network.task

    @classmethod
    def load(cls, run, *, checkpoint: str = "best") -> Regressor:
        """Load RUN's ``"best"`` checkpoint (lowest validation error) or its ``"last"``."""
        run = Path(run)
        info_path = run / "run.json"
        if not info_path.is_file():
            raise FileNotFoundError(f"{run} is not a meshfit training run (no run.json)")
        try:
            info = json.loads(info_path.read_text())
        except ValueError as e:
            raise ValueError(f"{info_path} is not valid JSON: {e}") from e
        if info.get("format_version") != RUN_FORMAT:
            raise ValueError(
                f"{info_path}: run format {info.get('format_version')}, this meshfit reads {RUN_FORMAT}"
            )
        config = TrainConfig.load(run / "config.yaml")
        model = _load_model(run, config.model)
        rig, names = load_cameras(run / "rig.json")
        task = Task.create(model, _network_rig(rig, config.resolution), proxy_faces=config.proxy_faces)
        network = build_network(
            config, task, _load_base(run, model, rig, task, config) if config.correction_passes else None
        )
        if checkpoint not in ("best", "last"):
            raise ValueError(f"checkpoint must be 'best' or 'last'; got {checkpoint!r}")
        last, best = _checkpointers(run, config.checkpoint.keep)
        try:
            manager = best if checkpoint == "best" and best.latest_step() is not None else last
            step = manager.latest_step()
            if step is None:
                raise FileNotFoundError(f"{run} has no checkpoint yet (checkpoints/{checkpoint} is empty)")
            # Shapes only, placed on this process's first device: the run may have been saved by
            # several processes, and orbax restores onto the shardings it is given.
            here = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
            like = jax.tree.map(
                lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=here),
                jax.eval_shape(
                    lambda p: _checkpoint_tree(network, make_optimizer(config), p, 0),
                    network.abstract_params(),
                ),
            )
            params = _restore(manager, step, like)["params"]
        finally:
            last.close()
            best.close()
        return cls(run, config, model, rig, list(names), network, params, int(step), info)

    def check_exportable(self, target: str) -> None:
        """A network only: a correcting network renders its first network's prediction between
        its passes, which no exported model can do."""
        if self.config.correction_passes:
            raise ValueError(
                f"{self.path} is a correcting network (it renders a prediction between passes): {target} "
                "cannot run it; export its first network (the run it corrects)"
            )

    def predict(self, inputs: jax.Array, cameras: Camera, present: jax.Array | None = None) -> dict:
        """Canonical parameters [B, ...] (``Task``) from network inputs [B, N, h, w, C] seen by
        cameras [B, N] at the network's resolution (``inputs.image_inputs`` makes both)."""
        if present is None:
            present = jnp.ones(inputs.shape[:2], jnp.float32)
        return self.network.predict_jit(self.params, inputs, cameras, present)


def _save_base(run: Path, base: Regressor) -> None:
    """Keep a correcting network's first network in its own run (a run needs no other file)."""
    folder = run / "base"
    folder.mkdir(exist_ok=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(to_dict(base.config), sort_keys=False))
    leaves = jax.tree_util.tree_flatten_with_path(base.params)[0]
    with atomic_path(folder / "params.npz") as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **{jax.tree_util.keystr(k): np.asarray(v) for k, v in leaves})


def _load_base(run: Path, model, rig: Camera, task: Task, own: TrainConfig) -> tuple[Network, dict]:
    """A correcting run's first network and its weights (``_save_base``); ``task``, ``own``: the
    correcting network's, its task reused when the first network's resolution and proxy are its."""
    folder = run / "base"
    if not (folder / "params.npz").is_file():
        raise FileNotFoundError(
            f"{run} is a correcting network's run but has no base/params.npz (its first network)"
        )
    config = TrainConfig.load(folder / "config.yaml")
    if (config.resolution, config.proxy_faces) != (own.resolution, own.proxy_faces):
        task = Task.create(model, _network_rig(rig, config.resolution), proxy_faces=config.proxy_faces)
    network = build_network(config, task)
    like = network.abstract_params()
    try:
        with open(folder / "params.npz", "rb") as fh, np.load(fh) as z:
            stored = {k: z[k] for k in z.files}
        paths, tree = jax.tree_util.tree_flatten_with_path(like)
        leaves = []
        for k, a in paths:
            v = stored[jax.tree_util.keystr(k)]
            if v.shape != a.shape:
                raise ValueError(f"{jax.tree_util.keystr(k)} has shape {v.shape}, expected {a.shape}")
            leaves.append(jnp.asarray(v, a.dtype))
    except (KeyError, ValueError, OSError, EOFError) as e:  # a missing weight, a truncated file
        raise ValueError(f"cannot read {folder / 'params.npz'} (the first network's weights): {e}") from e
    return network, jax.tree_util.tree_unflatten(tree, leaves)


def _check_base(base: Regressor, config: TrainConfig, model, rig: Camera, corrects) -> None:
    """The network a correcting network corrects must read the same views of the same model."""
    b = base.config
    for key in ("model", "resolution", "inputs"):
        if getattr(b, key) != getattr(config, key):
            raise ValueError(
                f"--corrects {corrects}: its network's {key} is {getattr(b, key)!r}; this config's "
                f"{getattr(config, key)!r} (a correcting network reads what its first network reads)"
            )
    _check_same(f"--corrects {corrects}", "its", base.model, model, base.rig, rig)


def _load_model(run: Path, kind: str):
    if kind == "blendshapes":
        return BlendshapeModel.load(run / "model.npz")
    return load_mesh(run / "model.obj")


def _checkpoint_tree(network: Network, optimizer, params: dict, step: int) -> dict:
    """The training carry (``train.make_train_step``): what a checkpoint holds."""
    return {"params": params, "opt_state": optimizer.init(params), "step": jnp.asarray(step, jnp.int32)}


def _same_run(run: Path, config: TrainConfig, model, rig: Camera) -> None:
    """A resumed run must be the run that was started (only ``steps`` may grow)."""
    saved = TrainConfig.load(run / "config.yaml")
    a, b = to_dict(saved), to_dict(config)
    a.pop("steps"), b.pop("steps")
    if a != b:
        diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        raise ValueError(
            f"--resume: the config differs from the run's in {diff}; resume with the run's config.yaml"
        )
    old_rig, _ = load_cameras(run / "rig.json")
    _check_same("--resume", "the run's", _load_model(run, saved.model), model, old_rig, rig)


def _check_same(flag: str, whose: str, model_a, model_b, rig_a: Camera, rig_b: Camera) -> None:
    """Raise ValueError unless two models (rest vertices) and two rigs (camera axes) agree."""
    va = np.asarray(model_a.neutral if isinstance(model_a, BlendshapeModel) else model_a.vertices)
    vb = np.asarray(model_b.neutral if isinstance(model_b, BlendshapeModel) else model_b.vertices)
    if va.shape != vb.shape or not np.allclose(va, vb, atol=1e-5 * max(1.0, float(np.abs(va).max()))):
        raise ValueError(
            f"{flag}: the model differs from {whose} ({va.shape[0]} vs {vb.shape[0]} vertices, or moved ones)"
        )
    if rig_a.batch_shape != rig_b.batch_shape or not np.allclose(
        np.asarray(rig_a.R), np.asarray(rig_b.R), atol=1e-5
    ):
        raise ValueError(f"{flag}: the cameras differ from {whose} rig")


def train(
    config: TrainConfig,
    model: BlendshapeModel | Mesh,
    rig: Camera,
    out,
    *,
    names: list[str] | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    devices=None,
    inputs: tuple = (),
    command: str | None = None,
    data=None,
    init=None,
    corrects=None,
) -> dict:
    """Train a regressor for ``model`` seen by ``rig`` [N]; write (or continue) the run folder ``out``.

    Args:
        config: the TrainConfig. model: a BlendshapeModel (config.model "blendshapes") or the
            known Mesh ("rigid"). rig: [N] cameras at their own resolution; names: view names.
        out: the run folder. resume: continue the run there from its last checkpoint (the
            config may raise ``steps``; nothing else may differ).
        overwrite: replace an earlier meshfit output at ``out`` (not with resume).
        devices: split each batch over these jax devices (data parallel). Under
            ``jax.distributed`` (several processes, ``meshfit train --coordinator``) the default
            is every process's devices; process 0 writes the run folder's files, every process
            takes part in the checkpoints (orbax), and the folder must be shared.
        inputs: paths this run reads (config, model, cameras): ``out`` may not contain them.
        data: fine-tune on an unlabelled dataset (``meshfit.io.Views`` through the rig, one
            frame or a sequence): random frames instead of rendered samples, the loss's image
            terms only (the config must weigh silhouette or depth).
        init: start from the best weights of this trained run (same model, rig and network).
        corrects: a trained run (or its ``Regressor``) whose predictions this network learns to
            correct (``config.correction_passes`` > 0; same model, rig, resolution and inputs);
            its weights are kept in this run's base/. Resuming reads them from there.
    Returns:
        The summary also written to run.json: steps, seconds, samples/s, the last validation.
    """
    out = Path(out)
    if config.model == "blendshapes" and not isinstance(model, BlendshapeModel):
        raise ValueError("a blendshapes training needs a blendshape model (CLI: --model FOLDER_OR_NPZ)")
    if config.model == "rigid" and not isinstance(model, Mesh):
        raise ValueError("a rigid training needs the known mesh (CLI: --model MESH)")
    if len(rig.batch_shape) != 1:
        raise ValueError(f"the rig must be a [N] batch of cameras; got batch shape {rig.batch_shape}")
    names = list(names) if names is not None else [f"{i:03d}" for i in range(rig.batch_shape[0])]
    primary = jax.process_index() == 0
    if devices is None and jax.process_count() > 1:
        devices = jax.devices()
    task = Task.create(model, _network_rig(rig, config.resolution), proxy_faces=config.proxy_faces)
    task.coeff_ranges(config.sampling)  # names a typo in sampling.ranges now, not after rendering
    if config.loss.landmarks and not task.num_landmarks:
        raise ValueError(
            "loss.landmarks: the model defines no landmarks (a blendshape model's 'landmarks' in its "
            "blendshapes.json; a rigid mesh has none)"
        )
    base = None
    if config.correction_passes:
        if resume and (out / "base" / "params.npz").is_file():
            base = _load_base(out, model, rig, task, config)
        elif corrects is not None:  # (without it, build_network names what is missing)
            first = corrects if isinstance(corrects, Regressor) else Regressor.load(corrects)
            _check_base(first, config, model, rig, corrects)
            base = (first.network, first.params)
    elif corrects is not None:
        raise ValueError(
            "--corrects: this config's correction_passes is 0; a correcting network's config sets it "
            "(e.g. amortize_face_correct)"
        )
    network = build_network(config, task, base)
    optimizer = make_optimizer(config)
    params0 = _init_params(network, init) if init is not None else network.init_params()
    batches = None
    if data is not None:
        from meshfit.amortize.predict import check_cameras
        from meshfit.amortize.train import data_batch

        if not (config.loss.silhouette or config.loss.depth or config.loss.shading or config.loss.landmarks):
            raise ValueError(
                "training on a dataset (--data) has no labels: give the image terms a weight "
                "(loss.silhouette, loss.depth, loss.shading, loss.landmarks)"
            )
        check_cameras(rig, names, config.jitter, float(task.radius), "the rig", data.cameras, data.names)
        batches = data_batch(network, data)
    if resume:
        if overwrite:
            raise ValueError("--resume continues a run; --overwrite would replace it: pass one of them")
        if not (out / "run.json").is_file():
            raise FileNotFoundError(f"--resume: {out} is not a meshfit training run (no run.json)")
        _same_run(out, config, model, rig)
    elif primary:
        check_output_dir(out, overwrite=overwrite, inputs=inputs)
        if out.exists():
            shutil.rmtree(out)  # a meshfit output (check_output_dir made sure)
        out.mkdir(parents=True)
        (out / MARKER).write_text(json.dumps({"kind": "train"}) + "\n")
        (out / "config.yaml").write_text(yaml.safe_dump(to_dict(config), sort_keys=False))
        save_cameras(out / "rig.json", rig, names=names)
        if isinstance(model, BlendshapeModel):
            model.save(out / "model.npz")
        else:
            save_mesh(out / "model.obj", model)
        if base is not None:
            _save_base(out, first)
    info = {
        "format_version": RUN_FORMAT, "representation": config.model,
        "vertices": task.num_vertices, "faces": int(task.faces.shape[0]),
        "coefficients": list(task.coeff_names),
        "views": list(names), "rig_size": [rig.width, rig.height],
        "input_size": [task.rig.width, task.rig.height], "channels": [*config.inputs, "ray_x", "ray_y"],
        "rig_centre": np.asarray(task.target).tolist(), "radius": float(task.radius),
        "bbox_diagonal": task.diagonal, "network": network.cost, "devices": len(devices or [None]),
        "processes": jax.process_count(),
        "init": None if init is None else str(Path(init).resolve()),
        "corrects": None if corrects is None else str(Path(getattr(corrects, "path", corrects)).resolve()),
        "data_frames": None if data is None else (len(data.frames) if data.frames is not None else 1),
        "command": command,
    }  # fmt: skip
    if not resume and primary:
        (out / "run.json").write_text(json.dumps(info, indent=1) + "\n")

    # The validation set: rendered once, at the start (by process 0; the others wait for it).
    val_path = out / "validation.npz"
    if not val_path.is_file() and primary:
        save_validation(val_path, render_validation(task, rig, config, progress=progress))
    _barrier("meshfit train: the run folder is ready")
    val = load_validation(val_path)

    last, best = _checkpointers(out, config.checkpoint.keep)
    carry = _checkpoint_tree(network, optimizer, params0, 0)
    step0 = 0
    if resume:
        latest = last.latest_step()
        if latest is not None:  # else killed before its first checkpoint: start again
            carry = _restore(last, latest, carry)
            step0 = int(carry["step"])
        if step0 > config.steps:
            raise ValueError(f"--resume: the run is at step {step0}, past the config's steps {config.steps}")
    log = out / "metrics.jsonl"
    if primary:
        truncate_jsonl(log, step0)
    if devices is not None and len(devices) > 1:
        from jax.sharding import Mesh as DeviceMesh
        from jax.sharding import NamedSharding
        from jax.sharding import PartitionSpec as P

        # Parameters and optimiser state replicated over the devices (of every process).
        carry = jax.device_put(carry, NamedSharding(DeviceMesh(np.asarray(devices), ("data",)), P()))

    step_fn = make_train_step(network, optimizer, devices=devices, data=batches)
    bar = None
    if progress and primary:
        from tqdm.auto import tqdm

        bar = tqdm(total=config.steps, initial=step0, desc="train", unit="step", smoothing=0.1)
    t0 = time.perf_counter()
    compile_s = 0.0
    window: list[dict] = []
    t_window = time.perf_counter()
    saved_at = step0
    val_summary = None
    step = step0

    def checkpoint(carry: dict) -> dict:
        nonlocal saved_at
        import orbax.checkpoint as ocp

        step = int(carry["step"])
        ev = evaluate(network, jax.device_get(carry["params"]), val)
        summary = summarize(ev["errors"])
        if primary:
            write_jsonl(log, {"step": step, "validation": summary})
        last.save(step, args=ocp.args.StandardSave(carry), force=True)
        score = {"vertex_pct": summary["vertex_pct"]["mean"]}
        best.save(step, args=ocp.args.StandardSave(carry), metrics=score, force=True)
        last.wait_until_finished()
        best.wait_until_finished()
        for manager in (last, best):
            if primary and step in manager.all_steps():  # best keeps only the best
                _seal(manager, step)
        _barrier(f"meshfit train: checkpoint {step} sealed")
        saved_at = step
        return summary

    try:
        for step in range(step0, config.steps):
            t = time.perf_counter()
            # One assignment: an interrupt leaves `carry` wholly before or wholly after the step.
            carry, metrics = step_fn(carry)
            if step == step0:
                jax.block_until_ready(carry)
                compile_s = time.perf_counter() - t
                t_window = time.perf_counter()
            window.append(metrics)
            done = step + 1
            if done % config.log_every == 0 or done == config.steps:
                host = jax.device_get(window)
                mean = {k: float(np.mean([m[k] for m in host])) for k in host[0]}
                if not np.isfinite(mean["loss"]):
                    raise FloatingPointError(
                        f"the training loss became non-finite by step {done}; the last checkpoint "
                        f"(step {saved_at}) is kept: lower optim.lr or raise optim.clip, then --resume"
                    )
                elapsed = time.perf_counter() - t_window
                rate = len(window) * config.batch / max(elapsed, 1e-9)
                lr = float(lr_schedule(config)(done))
                if primary:
                    write_jsonl(log, {"step": done, **mean, "lr": lr, "samples_per_s": rate,
                                      "seconds": time.perf_counter() - t0})  # fmt: skip
                if bar is not None:
                    bar.set_postfix(loss=f"{mean['loss']:.4g}", samples_s=f"{rate:.0f}", refresh=False)
                window, t_window = [], time.perf_counter()
            if done % config.checkpoint.every == 0 or done == config.steps:
                val_summary = checkpoint(carry)
                if bar is not None:
                    bar.write(
                        f"step {done}: validation vertex error {val_summary['vertex_pct']['mean']:.3f}% "
                        f"(median {val_summary['vertex_pct']['median']:.3f}%), rotation median "
                        f"{val_summary['rotation_deg']['median']:.2f} deg"
                    )
                t_window = time.perf_counter()
            if bar is not None:
                bar.update(1)
        step = config.steps
    except KeyboardInterrupt:
        done = int(carry["step"])
        if done > saved_at:
            checkpoint(carry)
        raise KeyboardInterrupt(f"training interrupted at step {done}; continue with --resume") from None
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - t0
    summary = {
        **info, "steps": config.steps, "resumed_from": step0 if resume else None, "seconds": seconds,
        "compile_seconds": compile_s,
        "samples_per_s": (config.steps - step0) * config.batch / max(seconds - compile_s, 1e-9),
        "validation": val_summary, "best_step": best.best_step() if hasattr(best, "best_step") else None,
    }  # fmt: skip
    if primary:
        (out / "run.json").write_text(json.dumps(summary, indent=1) + "\n")
        from meshfit.amortize.report import write_train_report

        write_train_report(out, network, jax.device_get(carry["params"]), val, summary)
    last.close()
    best.close()
    return summary


def _init_params(network: Network, init) -> dict:
    """The best weights of the run ``init``, which must have this network's shapes."""
    reg = Regressor.load(init)
    if reg.task.num_vertices != network.task.num_vertices:
        raise ValueError(
            f"--init {init}: its network predicts a model of {reg.task.num_vertices} vertices; this one has "
            f"{network.task.num_vertices}"
        )
    want = jax.tree.map(lambda a: a.shape, network.abstract_params())
    have = jax.tree.map(lambda a: a.shape, reg.params)
    if want != have:
        raise ValueError(
            f"--init {init}: its network's layers differ from this config's (network, inputs, resolution)"
        )
    return reg.params


def _barrier(name: str) -> None:
    """Wait for every process (under jax.distributed; a no-op in one process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def train_folder(config_data: dict, model_path, cameras_path, out, *, resume=False, overwrite=False,
                 progress=True, devices=None, config_path=None, command=None, data=None,
                 init=None, corrects=None) -> dict:  # fmt: skip
    """What ``meshfit train`` calls: read the config, model and cameras, then ``train``."""
    from meshfit.fitting.folder import check_config_kind

    check_config_kind(config_data, "train", config_path or "the config")
    config = TrainConfig.from_dict(config_data)
    inputs = [p for p in (config_path, model_path, cameras_path, data, init, corrects) if p is not None]
    if config.model == "blendshapes":
        inputs += BlendshapeModel.source_files(model_path)
    if not resume:
        check_output_dir(out, overwrite=overwrite, inputs=inputs)
    elif not Path(out, "run.json").is_file():
        raise OutputError(f"--resume: {out} is not a meshfit training run (no run.json)")
    model = BlendshapeModel.load(model_path) if config.model == "blendshapes" else load_mesh(model_path)
    rig, names = load_cameras(cameras_path)
    views = None
    if data is not None:
        from meshfit.io import is_sequence, load_sequence, load_views

        views = load_sequence(data) if is_sequence(data) else load_views(data)
    return train(config, model, rig, out, names=names, resume=resume, overwrite=overwrite, progress=progress,
                 devices=devices, inputs=tuple(inputs), command=command, data=views, init=init,
                 corrects=corrects)  # fmt: skip
