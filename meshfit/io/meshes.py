"""Mesh files through trimesh: OBJ, PLY, STL, OFF, GLB/glTF, the file's vertex order kept."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from meshfit.io.atomic import atomic_path
from meshfit.io.images import float_to_uint8, image_to_float, read_image, write_image
from meshfit.mesh import Mesh, MeshError

__all__ = ["MESH_SUFFIXES", "MeshIOError", "load_mesh", "save_mesh"]

MESH_SUFFIXES = (".obj", ".ply", ".stl", ".off", ".glb", ".gltf")


class MeshIOError(MeshError):
    """A mesh file that cannot be read or written."""


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
    if path.is_dir():
        raise MeshIOError(f"{path} is a folder; expected a mesh file ({', '.join(MESH_SUFFIXES)})")
    if not path.is_file():
        raise FileNotFoundError(f"mesh file not found: {path}")
    if path.suffix.lower() not in MESH_SUFFIXES:
        raise MeshIOError(
            f"unsupported mesh format {path.suffix!r} for {path}; expected one of {MESH_SUFFIXES}"
        )
    kind = path.suffix.lower()[1:].upper()
    merged = False  # an OBJ of several parts, whose texture coordinates are dropped
    try:
        with warnings.catch_warnings():  # trimesh's parse warnings: the checks below say it plainly
            warnings.simplefilter("ignore", RuntimeWarning)
            loaded = trimesh.load(path, process=False, maintain_order=True)
        if isinstance(loaded, trimesh.Scene):
            if not loaded.geometry:
                raise MeshIOError(f"{path} contains no geometry")
            merged = path.suffix.lower() == ".obj" and len(loaded.geometry) > 1
            if merged:
                loaded = _merged_obj(path)
            else:
                loaded = loaded.to_mesh()
    except MeshIOError:
        raise
    except Exception as e:  # trimesh raises many types on corrupt or truncated input
        if isinstance(e, (ImportError, UnicodeDecodeError)):
            # trimesh reached for a text decoder: the bytes are neither the binary form nor text.
            raise MeshIOError(f"{path} is not a readable {kind} file: its bytes are not mesh data") from e
        raise MeshIOError(f"{path} is not a readable {kind} file ({type(e).__name__}: {e})") from e
    if not isinstance(loaded, trimesh.Trimesh):
        raise MeshIOError(f"{path} holds a {type(loaded).__name__}, not a triangle mesh (no faces?)")
    if len(loaded.faces) == 0:
        raise MeshIOError(f"{path} has no faces ({len(loaded.vertices)} vertices)")

    uv_records = 0
    if path.suffix.lower() == ".obj":
        uv_records = _check_obj_records(path, len(loaded.vertices), len(loaded.faces))
    elif path.suffix.lower() == ".off":
        _check_off_counts(path, len(loaded.vertices), len(loaded.faces))
    vertices = np.asarray(loaded.vertices, np.float32)
    faces = np.asarray(loaded.faces, np.int64)
    visual = loaded.visual
    colors = uvs = uv_faces = tex = None
    if visual.kind == "vertex":
        rgba = np.asarray(visual.vertex_colors, np.float32) / 255.0
        colors = rgba if (rgba[:, 3] < 1).any() else rgba[:, :3]
    uv = getattr(visual, "uv", None)
    split = None
    if uv_records and not merged and (uv is None or not len(uv)):
        # maintain_order keeps no UVs at all when the file has more `vt` than `v` records (a
        # layout with seams, such as ICT-FaceKit's): the plain load below still reads them.
        split = _plain_obj(path)
        visual = split.visual
        uv = getattr(visual, "uv", None)
    if uv is not None and len(uv):
        if path.suffix.lower() == ".obj":
            # maintain_order keeps one UV per vertex and loses seams; a plain load splits
            # vertices at seams instead, face for face, which gives the per-corner UV indices.
            split = split if split is not None else _plain_obj(path)
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
            tex = image_to_float(np.asarray(image))
    if texture is not None:
        if uvs is None:
            raise MeshIOError(f"{path} has no texture coordinates, so a texture cannot be bound")
        tex = read_image(texture)
    return Mesh(vertices, faces, colors=colors, uvs=uvs, uv_faces=uv_faces, texture=tex)


def _plain_obj(path: Path):
    """The OBJ loaded without ``maintain_order``: vertices split at UV seams, one trimesh."""
    import trimesh

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        split = trimesh.load(path, process=False)
    return split.to_mesh() if isinstance(split, trimesh.Scene) else split


def _merged_obj(path: Path):
    """An OBJ of several objects or materials (a game asset: face, eyes, teeth, ...) as one mesh
    in the file's vertex order. trimesh splits it into one geometry per part; loaded without
    materials, each part keeps a prefix of the file's vertices and indexes them as the file does,
    so the parts' faces together index the longest prefix. Texture coordinates and materials are
    dropped (one texture per mesh is what meshfit keeps)."""
    import trimesh

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        scene = trimesh.load(path, process=False, maintain_order=True, skip_materials=True,
                             group_material=False, split_object=False)  # fmt: skip
    parts = list(scene.geometry.values()) if isinstance(scene, trimesh.Scene) else [scene]
    longest = max(parts, key=lambda g: len(g.vertices))
    if not all(np.array_equal(g.vertices, longest.vertices[: len(g.vertices)]) for g in parts):
        raise MeshIOError(
            f"{path}: its parts do not share the file's vertex list; cannot keep its vertex order"
        )
    faces = np.concatenate([np.asarray(g.faces) for g in parts])
    return trimesh.Trimesh(longest.vertices, faces, process=False, maintain_order=True)


def _check_off_counts(path: Path, num_vertices: int, num_faces: int) -> None:
    """An OFF header declares its vertex and face counts: a load with fewer is a truncated file."""
    tokens = []
    with open(path, "rb") as fh:
        for raw in fh:
            line = raw.split(b"#", 1)[0].strip()
            if line:
                tokens += line.split()
            if len(tokens) >= 4:
                break
    if tokens and tokens[0].upper().endswith(b"OFF") and len(tokens) >= 3:
        tokens = tokens[1:]
    try:
        declared_v, declared_f = int(tokens[0]), int(tokens[1])
    except (IndexError, ValueError):
        raise MeshIOError(f"{path}: no OFF header with vertex and face counts") from None
    if num_vertices < declared_v or num_faces < declared_f:
        raise MeshIOError(
            f"{path}: the header declares {declared_v} vertices and {declared_f} faces but only "
            f"{num_vertices} and {num_faces} could be read: it looks truncated"
        )


def _check_obj_records(path: Path, num_vertices: int, num_faces: int) -> int:
    """trimesh skips OBJ records it cannot parse (a truncated file loses faces without a word):
    count the file's own ``v`` and ``f`` records and refuse a load that lost any. Returns the
    number of ``vt`` records."""
    v_records = f_records = vt_records = 0
    last = b""
    with open(path, "rb") as fh:
        for line in fh:
            last = line
            head = line.lstrip()[:2]
            if head == b"v " or head == b"v\t":
                v_records += 1
            elif head == b"f " or head == b"f\t":
                f_records += 1
            elif line.lstrip()[:3] in (b"vt ", b"vt\t"):
                vt_records += 1
    truncated = last and not last.endswith(b"\n") and last.lstrip()[:2] in (b"v ", b"f ", b"vt", b"vn")
    if num_vertices != v_records or num_faces < f_records:
        raise MeshIOError(
            f"{path}: the file has {v_records} vertex and {f_records} face records but only "
            f"{num_vertices} vertices and {num_faces} faces could be read"
            + (": it looks truncated" if truncated else " (malformed records or indices)")
        )
    if truncated:
        last_text = last.decode("utf-8", "replace").strip()
        fields = last_text.split()
        if (fields[0] == "v" and len(fields) < 4) or (fields[0] == "f" and len(fields) < 4):
            raise MeshIOError(f"{path} looks truncated: its last line is {last_text!r}")
    return vt_records


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

            image = Image.fromarray(float_to_uint8(np.asarray(mesh.texture)).squeeze())
        visual = trimesh.visual.TextureVisuals(uv=np.asarray(mesh.uvs), image=image)
    elif mesh.colors is not None:
        visual = trimesh.visual.ColorVisuals(vertex_colors=float_to_uint8(np.asarray(mesh.colors)))
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
