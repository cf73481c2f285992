"""Files in and out: meshes (through trimesh), camera files, images.

Every writer is atomic: it writes a temporary file in the target folder and renames it into
place, so a crash or bad input never leaves a half-written output file.

Camera files
------------
``cameras.json`` is meshfit's interchange format, plain JSON meant to be read by other tools::

    {"convention": "opencv",
     "cameras": [{"name": "000", "width": W, "height": H,
                  "K": [[fx, 0, cx], [0, fy, cy], [0, 0, 1]],
                  "world_to_camera": [[r00, r01, r02, tx], [r10, r11, r12, ty],
                                      [r20, r21, r22, tz], [0, 0, 0, 1]]}, ...]}

OpenCV convention: x right, y down, z forward; the centre of the top-left pixel is (0, 0);
``world_to_camera`` maps world points to camera space (row-major 4x4). Extra keys (e.g.
``near``, ``far``, ``distortion``) are allowed and ignored by the loader.

``load_cameras`` also imports COLMAP text models (``cameras.txt`` + ``images.txt``, pinhole
models or distortion models with zero distortion) and nerfstudio / Blender ``transforms.json``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from meshfit.camera import Camera, CameraError
from meshfit.mesh import Mesh, MeshError

__all__ = [
    "CameraSet",
    "Views",
    "atomic_dir",
    "MeshIOError",
    "load_cameras",
    "load_mesh",
    "load_views",
    "read_image",
    "save_cameras",
    "save_mesh",
    "write_image",
    "write_views",
]

MESH_SUFFIXES = (".obj", ".ply", ".stl", ".off", ".glb", ".gltf")


class MeshIOError(MeshError):
    """A mesh file that cannot be read or written."""


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; it becomes ``path`` only if the block succeeds.

    ``path`` must not exist, or be an empty folder, unless ``overwrite``.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"{path} exists and is not a folder")
    if path.exists() and any(path.iterdir()) and not overwrite:
        raise FileExistsError(
            f"{path} is not empty; choose another folder or pass overwrite=True (--overwrite)"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def write_views(folder: str | os.PathLike, names: Sequence[str], **images: np.ndarray) -> None:
    """Write per-view images in the dataset layout: ``folder/KIND/NAME.png`` (or ``.npy``).

    Each keyword is a KIND with [N, H, W(, C)] arrays: ``rgb`` (float in [0, 1] or uint8),
    ``mask`` (bool, written 0/255), ``normal`` (unit vectors, written as (n + 1) / 2, black where
    zero), ``depth`` (float32 camera-space z, written as .npy, 0 where empty).
    """
    folder = Path(folder)
    for kind, arr in images.items():
        if len(arr) != len(names):
            raise ValueError(f"{kind}: {len(arr)} images for {len(names)} names")
        (folder / kind).mkdir(parents=True, exist_ok=True)
        for name, img in zip(names, arr):
            if kind == "depth":
                np.save(folder / kind / f"{name}.npy", np.asarray(img, np.float32))
            elif kind == "mask":
                write_image(folder / kind / f"{name}.png", np.asarray(img, bool).astype(np.uint8) * 255)
            elif kind == "normal":
                n = np.asarray(img)
                on_surface = np.any(n != 0, axis=-1, keepdims=True)
                encoded = np.where(on_surface, (n + 1.0) / 2.0, 0.0)
                write_image(folder / kind / f"{name}.png", encoded)
            else:
                write_image(folder / kind / f"{name}.png", img)


# ---------------------------------------------------------------------------------------------
# Meshes


def load_mesh(path: str | os.PathLike, *, texture: str | os.PathLike | None = None) -> Mesh:
    """Read a mesh file (OBJ, PLY, STL, OFF, GLB/glTF) through trimesh, keeping the file's vertex order.

    Vertices are never merged, split or reordered (``process=False, maintain_order=True``), so
    files in vertex correspondence (blendshapes) stay in correspondence. Quads and polygons are
    triangulated by trimesh. OBJ texture coordinates keep their own indices (``uv_faces``), so
    UV seams do not split vertices. A glTF/GLB scene is flattened into one mesh with its node
    transforms applied. Per-vertex colours and a texture image (from the material) are kept.

    Args:
        path: the mesh file.
        texture: optional image file to use as the texture (e.g. an OBJ shipped without .mtl);
            the mesh must have texture coordinates.
    """
    import trimesh

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"mesh file not found: {path}")
    if path.suffix.lower() not in MESH_SUFFIXES:
        raise MeshIOError(
            f"unsupported mesh format {path.suffix!r} for {path}; expected one of {MESH_SUFFIXES}"
        )
    try:
        loaded = trimesh.load(path, process=False, maintain_order=True)
        if isinstance(loaded, trimesh.Scene):
            if not loaded.geometry:
                raise MeshIOError(f"{path} contains no geometry")
            loaded = loaded.to_mesh()
    except MeshIOError:
        raise
    except Exception as e:  # trimesh raises many types on corrupt or truncated input
        raise MeshIOError(f"cannot read mesh {path}: {type(e).__name__}: {e}") from e
    if not isinstance(loaded, trimesh.Trimesh):
        raise MeshIOError(f"{path} holds a {type(loaded).__name__}, not a triangle mesh (no faces?)")
    if len(loaded.faces) == 0:
        raise MeshIOError(f"{path} has no faces ({len(loaded.vertices)} vertices)")

    vertices = np.asarray(loaded.vertices, np.float32)
    faces = np.asarray(loaded.faces, np.int64)
    visual = loaded.visual
    colors = uvs = uv_faces = tex = None
    if visual.kind == "vertex":
        rgba = np.asarray(visual.vertex_colors, np.float32) / 255.0
        colors = rgba if (rgba[:, 3] < 1).any() else rgba[:, :3]
    uv = getattr(visual, "uv", None)
    if uv is not None and len(uv):
        if path.suffix.lower() == ".obj":
            # maintain_order keeps one UV per vertex and loses seams; a plain load splits
            # vertices at seams instead, face for face, which gives the per-corner UV indices.
            split = trimesh.load(path, process=False)
            if isinstance(split, trimesh.Scene):
                split = split.to_mesh()
            if len(split.faces) != len(faces) or not np.allclose(
                split.vertices[split.faces], vertices[faces]
            ):
                raise MeshIOError(f"{path}: texture coordinates do not line up with the faces")
            uvs = np.asarray(split.visual.uv, np.float32)
            uv_faces = np.asarray(split.faces, np.int64)
        elif len(uv) == len(vertices):
            uvs = np.asarray(uv, np.float32)
        material = getattr(visual, "material", None)
        image = getattr(material, "image", None) or getattr(material, "baseColorTexture", None)
        # trimesh gives a texture-less OBJ a placeholder 2x2 grey image: that is no texture.
        placeholder = np.asarray(trimesh.visual.material.color_image())
        if image is not None and not np.array_equal(np.asarray(image), placeholder):
            tex = _image_to_float(np.asarray(image))
    if texture is not None:
        if uvs is None:
            raise MeshIOError(f"{path} has no texture coordinates, so a texture cannot be bound")
        tex = read_image(texture)
    return Mesh(vertices, faces, colors=colors, uvs=uvs, uv_faces=uv_faces, texture=tex)


def save_mesh(path: str | os.PathLike, mesh: Mesh) -> None:
    """Write a mesh. OBJ keeps everything (UV indices, vertex colours, texture as .mtl + .png);
    PLY/STL/OFF/GLB go through trimesh (UVs only when they are per vertex)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in MESH_SUFFIXES or suffix == ".gltf":
        raise MeshIOError(f"cannot write {suffix!r}; use one of .obj .ply .stl .off .glb")
    v = np.asarray(mesh.vertices, np.float64)
    f = np.asarray(mesh.faces)
    if suffix == ".obj":
        _save_obj(path, mesh, v, f)
        return
    import trimesh

    visual = None
    if mesh.uvs is not None:
        if not np.array_equal(np.asarray(mesh.uv_faces), f):
            raise MeshIOError(
                f"{suffix} stores one UV per vertex but this mesh has UV seams (uv_faces != faces); "
                "write .obj to keep them"
            )
        image = None
        if mesh.texture is not None:
            from PIL import Image

            image = Image.fromarray(_float_to_uint8(np.asarray(mesh.texture)).squeeze())
        visual = trimesh.visual.TextureVisuals(uv=np.asarray(mesh.uvs), image=image)
    elif mesh.colors is not None:
        visual = trimesh.visual.ColorVisuals(vertex_colors=_float_to_uint8(np.asarray(mesh.colors)))
    tm = trimesh.Trimesh(v, f, visual=visual, process=False, maintain_order=True)
    with atomic_path(path) as tmp:
        tm.export(tmp, file_type=suffix[1:])


def _save_obj(path: Path, mesh: Mesh, v: np.ndarray, f: np.ndarray) -> None:
    lines = ["# written by meshfit"]
    if mesh.texture is not None:
        lines.append(f"mtllib {path.stem}.mtl")
    if mesh.colors is not None:
        c = np.asarray(mesh.colors)[:, :3]
        lines += [
            f"v {a:.9g} {b:.9g} {z:.9g} {r:.6g} {g:.6g} {bl:.6g}" for (a, b, z), (r, g, bl) in zip(v, c)
        ]
    else:
        lines += [f"v {a:.9g} {b:.9g} {z:.9g}" for a, b, z in v]
    f1 = f + 1
    if mesh.uvs is not None:
        lines += [f"vt {a:.9g} {b:.9g}" for a, b in np.asarray(mesh.uvs, np.float64)]
        if mesh.texture is not None:
            lines.append("usemtl material0")
        t1 = np.asarray(mesh.uv_faces) + 1
        lines += [f"f {a}/{ta} {b}/{tb} {c}/{tc}" for (a, b, c), (ta, tb, tc) in zip(f1, t1)]
    else:
        lines += [f"f {a} {b} {c}" for a, b, c in f1]
    if mesh.texture is not None:
        write_image(path.with_suffix(".png"), np.asarray(mesh.texture))
        with atomic_path(path.with_suffix(".mtl")) as tmp:
            tmp.write_text(f"newmtl material0\nKd 1 1 1\nmap_Kd {path.stem}.png\n")
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")


# ---------------------------------------------------------------------------------------------
# Images


def _image_to_float(a: np.ndarray) -> np.ndarray:
    if a.ndim == 2:
        a = a[:, :, None]
    if a.dtype == np.uint8:
        return a.astype(np.float32) / 255.0
    if a.dtype == np.uint16:
        return a.astype(np.float32) / 65535.0
    return a.astype(np.float32)


def _float_to_uint8(a: np.ndarray) -> np.ndarray:
    if a.dtype == np.uint8:
        return a
    return np.clip(np.rint(np.asarray(a, np.float64) * 255.0), 0, 255).astype(np.uint8)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as [H, W, C] float32 in [0, 1] (row 0 = top)."""
    from PIL import Image

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    try:
        with Image.open(path) as im:
            im.load()
            return _image_to_float(np.asarray(im))
    except OSError as e:
        raise OSError(f"cannot read image {path}: {e}") from e


def write_image(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write [H, W], [H, W, 1], [H, W, 3] or [H, W, 4] (float in [0, 1], or uint8) as PNG/JPEG."""
    from PIL import Image

    a = np.asarray(image)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise ValueError(f"image must be [H, W], [H, W, 1|3|4]; got {a.shape}")
    if a.dtype != np.uint8 and not np.isfinite(a).all():
        raise ValueError(f"image for {path} contains non-finite values")
    with atomic_path(path) as tmp:
        Image.fromarray(_float_to_uint8(a)).save(
            tmp, format=Image.registered_extensions()[Path(path).suffix.lower()]
        )


# ---------------------------------------------------------------------------------------------
# Cameras


class CameraSet(NamedTuple):
    """Cameras read from a file: a batch of N cameras and the N view / image names."""

    cameras: Camera
    names: list[str]


def save_cameras(
    path: str | os.PathLike, cameras: Camera, *, names: Sequence[str] | None = None, **extra
) -> None:
    """Write ``cameras.json`` (format in the module docstring) for a single camera or a [N] batch.

    ``extra`` keys (JSON-serialisable, e.g. ``near=0.1``) are stored in every camera entry.
    """
    if len(cameras.batch_shape) > 1:
        raise CameraError(
            f"save_cameras takes one camera or a [N] batch; got batch shape {cameras.batch_shape}"
        )
    cams = cameras if cameras.batch_shape else _stack([cameras])
    n = cams.batch_shape[0]
    names = [f"{i:03d}" for i in range(n)] if names is None else list(names)
    if len(names) != n or len(set(names)) != n:
        raise CameraError(f"need {n} distinct names; got {names}")
    K = np.asarray(cams.K, np.float64)
    w2c = np.asarray(cams.world_to_camera, np.float64)
    entries = [
        {"name": names[i], "width": cams.width, "height": cams.height, "K": K[i].tolist(),
         "world_to_camera": w2c[i].tolist(), **extra}
        for i in range(n)
    ]  # fmt: skip
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps({"convention": "opencv", "cameras": entries}, indent=1) + "\n")


def _stack(cams: Sequence[Camera]) -> Camera:
    import jax

    return jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *cams)


def load_cameras(path: str | os.PathLike) -> CameraSet:
    """Read cameras from ``cameras.json``, a nerfstudio/Blender ``transforms.json``, or a COLMAP
    text model (a folder with ``cameras.txt`` and ``images.txt``, also found under ``sparse/0``).

    A folder is searched for those names in that order. All cameras must share one image size.
    Returns a ``CameraSet`` with cameras in OpenCV convention, batch shape (N,).
    """
    path = Path(path)
    if path.is_dir():
        for candidate in ("cameras.json", "transforms.json"):
            if (path / candidate).is_file():
                return load_cameras(path / candidate)
        for folder in (path, path / "sparse" / "0", path / "sparse"):
            if (folder / "cameras.txt").is_file() and (folder / "images.txt").is_file():
                return _load_colmap(folder)
        raise FileNotFoundError(
            f"no cameras in {path}: expected cameras.json, transforms.json or COLMAP cameras.txt + images.txt"
        )
    if not path.is_file():
        raise FileNotFoundError(f"camera file not found: {path}")
    if path.name in ("cameras.txt", "images.txt"):
        return _load_colmap(path.parent)
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CameraError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise CameraError(f"{path}: expected a JSON object at the top level")
    if "frames" in data:
        return _load_transforms(path, data)
    if "cameras" in data:
        return _load_cameras_json(path, data)
    raise CameraError(f"{path}: neither a cameras.json ('cameras' key) nor a transforms.json ('frames' key)")


def _matrix(value, shape: tuple[int, int], where: str) -> np.ndarray:
    try:
        m = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise CameraError(f"{where} must be a {shape[0]}x{shape[1]} list of numbers") from e
    if m.shape != shape:
        raise CameraError(f"{where} must be {shape[0]}x{shape[1]}; got shape {m.shape}")
    return m


def _size(entries: list[tuple[int, int]], path: Path) -> tuple[int, int]:
    sizes = sorted(set(entries))
    if len(sizes) != 1:
        raise CameraError(f"{path}: all cameras must share one image size; found {sizes}")
    return sizes[0]


def _load_cameras_json(path: Path, data: dict) -> CameraSet:
    if data.get("convention") != "opencv":
        raise CameraError(f"{path}: convention must be 'opencv'; got {data.get('convention')!r}")
    entries = data["cameras"]
    if not isinstance(entries, list) or not entries:
        raise CameraError(f"{path}: 'cameras' must be a non-empty list")
    Ks, w2cs, names, sizes = [], [], [], []
    for i, e in enumerate(entries):
        where = f"{path}: cameras[{i}]"
        missing = {"width", "height", "K", "world_to_camera"} - set(e)
        if missing:
            raise CameraError(f"{where} lacks {sorted(missing)}")
        Ks.append(_matrix(e["K"], (3, 3), f"{where}.K"))
        w2cs.append(_matrix(e["world_to_camera"], (4, 4), f"{where}.world_to_camera"))
        names.append(str(e.get("name", f"{i:03d}")))
        sizes.append((int(e["width"]), int(e["height"])))
    w, h = _size(sizes, path)
    try:
        cams = Camera.from_matrices(np.stack(Ks).astype(np.float32), np.stack(w2cs).astype(np.float32), w, h)
    except CameraError as e:
        raise CameraError(f"{path}: {e}") from e
    return CameraSet(cams, names)


def _load_transforms(path: Path, data: dict) -> CameraSet:
    """nerfstudio / Blender-NeRF ``transforms.json``: camera->world in OpenGL axes, pixel centres at +0.5."""
    frames = data["frames"]
    if not isinstance(frames, list) or not frames:
        raise CameraError(f"{path}: 'frames' must be a non-empty list")
    Ks, w2cs, names, sizes = [], [], [], []
    for i, fr in enumerate(frames):
        where = f"{path}: frames[{i}]"
        get = lambda k, fr=fr: fr.get(k, data.get(k))  # per-frame values override global ones
        if any(get(k) not in (None, 0, 0.0) for k in ("k1", "k2", "k3", "k4", "p1", "p2")):
            raise CameraError(f"{where}: lens distortion is not supported; undistort the images first")
        w, h = get("w"), get("h")
        if w is None or h is None:
            img = path.parent / fr.get("file_path", "")
            for cand in (img, img.with_suffix(".png")):
                if cand.is_file():
                    from PIL import Image

                    with Image.open(cand) as im:
                        w, h = im.size
                    break
            else:
                raise CameraError(f"{where}: no w/h and image {img} not found to read its size")
        w, h = int(w), int(h)
        if get("fl_x") is not None:
            fx = float(get("fl_x"))
            fy = float(get("fl_y") if get("fl_y") is not None else fx)
        elif get("camera_angle_x") is not None:
            fx = 0.5 * w / math.tan(0.5 * float(get("camera_angle_x")))
            fy = 0.5 * h / math.tan(0.5 * float(get("camera_angle_y"))) if get("camera_angle_y") else fx
        else:
            raise CameraError(f"{where}: no focal length (fl_x or camera_angle_x)")
        cx = float(get("cx")) - 0.5 if get("cx") is not None else (w - 1) / 2
        cy = float(get("cy")) - 0.5 if get("cy") is not None else (h - 1) / 2
        if "transform_matrix" not in fr:
            raise CameraError(f"{where} lacks transform_matrix")
        c2w = _matrix(fr["transform_matrix"], (4, 4), f"{where}.transform_matrix")
        c2w = c2w @ np.diag([1.0, -1.0, -1.0, 1.0])  # OpenGL camera axes -> OpenCV
        Ks.append(np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]]))
        w2cs.append(np.linalg.inv(c2w))
        names.append(str(fr.get("file_path", f"{i:03d}")))
        sizes.append((w, h))
    w, h = _size(sizes, path)
    try:
        cams = Camera.from_matrices(np.stack(Ks).astype(np.float32), np.stack(w2cs).astype(np.float32), w, h)
    except CameraError as e:
        raise CameraError(f"{path}: {e}") from e
    return CameraSet(cams, names)


# COLMAP camera models we accept, with the index of their distortion parameters.
_COLMAP_MODELS = {
    "SIMPLE_PINHOLE": ("f", 3),
    "PINHOLE": ("fxfy", 4),
    "SIMPLE_RADIAL": ("f", 3),
    "RADIAL": ("f", 3),
    "OPENCV": ("fxfy", 4),
    "FULL_OPENCV": ("fxfy", 4),
}


def _colmap_lines(path: Path) -> list[str]:
    # Keep blank lines: in images.txt an image with no 2-D points has an empty second line.
    return [ln.rstrip("\n") for ln in path.read_text().splitlines() if not ln.startswith("#")]


def _load_colmap(folder: Path) -> CameraSet:
    """COLMAP text model: cameras.txt + images.txt (world->camera quaternion, OpenCV axes)."""
    intr = {}
    for ln in _colmap_lines(folder / "cameras.txt"):
        if not ln.strip():
            continue
        parts = ln.split()
        try:
            cam_id, model, w, h = int(parts[0]), parts[1], int(parts[2]), int(parts[3])
            params = [float(p) for p in parts[4:]]
        except (IndexError, ValueError) as e:
            raise CameraError(f"{folder / 'cameras.txt'}: cannot parse line {ln!r}") from e
        if model not in _COLMAP_MODELS:
            raise CameraError(f"{folder / 'cameras.txt'}: camera {cam_id} model {model} is not supported")
        kind, ndist = _COLMAP_MODELS[model]
        if any(abs(p) > 0 for p in params[ndist:]):
            raise CameraError(
                f"{folder / 'cameras.txt'}: camera {cam_id} ({model}) has lens distortion; "
                "meshfit cameras are pinhole: run `colmap image_undistorter` first"
            )
        fx, fy = (params[0], params[0]) if kind == "f" else (params[0], params[1])
        cx, cy = params[ndist - 2], params[ndist - 1]
        # COLMAP puts the centre of the top-left pixel at (0.5, 0.5); meshfit at (0, 0).
        intr[cam_id] = (np.array([[fx, 0, cx - 0.5], [0, fy, cy - 0.5], [0, 0, 1]]), (w, h))
    lines = _colmap_lines(folder / "images.txt")
    records = []
    i = 0
    while i < len(lines):
        ln = lines[i].strip()
        i += 1
        if not ln:
            continue
        i += 1  # the POINTS2D line that follows each image line (possibly empty)
        parts = ln.split(maxsplit=9)
        try:
            qw, qx, qy, qz, tx, ty, tz = (float(p) for p in parts[1:8])
            cam_id, name = int(parts[8]), parts[9]
        except (IndexError, ValueError) as e:
            raise CameraError(f"{folder / 'images.txt'}: cannot parse line {ln!r}") from e
        if cam_id not in intr:
            raise CameraError(f"{folder / 'images.txt'}: image {name} uses unknown camera {cam_id}")
        q = np.array([qw, qx, qy, qz]) / np.linalg.norm([qw, qx, qy, qz])
        w_, x, y, z = q
        R = np.array([
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w_), 2 * (x * z + y * w_)],
            [2 * (x * y + z * w_), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w_)],
            [2 * (x * z - y * w_), 2 * (y * z + x * w_), 1 - 2 * (x * x + y * y)],
        ])  # fmt: skip
        w2c = np.eye(4)
        w2c[:3, :3], w2c[:3, 3] = R, (tx, ty, tz)
        records.append((name, intr[cam_id][0], w2c, intr[cam_id][1]))
    if not records:
        raise CameraError(f"{folder / 'images.txt'} lists no images")
    records.sort(key=lambda r: r[0])
    w, h = _size([r[3] for r in records], folder)
    cams = Camera.from_matrices(
        np.stack([r[1] for r in records]).astype(np.float32),
        np.stack([r[2] for r in records]).astype(np.float32),
        w,
        h,
    )
    return CameraSet(cams, [r[0] for r in records])


# ---------------------------------------------------------------------------------------------
# Datasets (the `meshfit synth` layout)


class Views(NamedTuple):
    """A multi-view dataset in memory.

    cameras: [N] batch. names: the N view names. rgb: [N, H, W, 3] float32 in [0, 1] or None.
    mask: [N, H, W] bool or None. depth: [N, H, W] float32 camera-space z (0 = empty) or None.
    """

    cameras: Camera
    names: list[str]
    rgb: np.ndarray | None
    mask: np.ndarray | None
    depth: np.ndarray | None


def load_views(folder: str | os.PathLike, *, cameras: str | os.PathLike | None = None) -> Views:
    """Read a dataset folder: cameras (``load_cameras``) and ``rgb/``, ``mask/``, ``depth/`` images.

    Each view's files are found by the stem of its name (``000`` -> ``rgb/000.png``,
    ``mask/000.png``, ``depth/000.npy``; ``images/frame_01.jpg`` -> ``rgb/frame_01.*``). A missing
    folder gives None for that kind; a missing file in a present folder, or an image whose size
    differs from its camera's, is an error naming the file.

    Args:
        folder: the dataset folder.
        cameras: the camera file or model folder, if not in ``folder``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"dataset folder not found: {folder}")
    cams, names = load_cameras(cameras if cameras is not None else folder)
    W, H = cams.width, cams.height

    def find(kind: str, name: str, suffixes: tuple[str, ...]) -> Path:
        stem = Path(name).stem
        for suffix in suffixes:
            if (folder / kind / f"{stem}{suffix}").is_file():
                return folder / kind / f"{stem}{suffix}"
        raise FileNotFoundError(
            f"{folder / kind} has no file for view {name!r} (looked for {stem}{suffixes})"
        )

    def check(path: Path, shape: tuple[int, ...]) -> None:
        if shape[:2] != (H, W):
            raise ValueError(f"{path} is {shape[1]}x{shape[0]} but its camera says {W}x{H}")

    images = {}
    for kind in ("rgb", "mask", "depth"):
        if not (folder / kind).is_dir():
            images[kind] = None
            continue
        out = []
        for name in names:
            if kind == "depth":
                path = find(kind, name, (".npy",))
                try:
                    d = np.load(path, allow_pickle=False)
                except (OSError, ValueError) as e:
                    raise ValueError(f"cannot read depth {path}: {e}") from e
                check(path, d.shape)
                if d.ndim != 2:
                    raise ValueError(f"{path} must be an [H, W] depth map; got {d.shape}")
                out.append(np.asarray(d, np.float32))
            else:
                path = find(kind, name, (".png", ".jpg", ".jpeg"))
                img = read_image(path)
                check(path, img.shape)
                out.append(img[..., 0] > 0.5 if kind == "mask" else img[..., :3])
        images[kind] = np.stack(out)
    return Views(cams, names, images["rgb"], images["mask"], images["depth"])
