"""Files in and out: meshes, images, camera files, datasets, and atomic output folders.

Every writer is atomic (``meshfit.io.atomic``): a crash or bad input never leaves a half-written
output, and ``--overwrite`` only ever replaces a folder meshfit made.
"""

from meshfit.io.atomic import (
    MARKER,
    OutputError,
    atomic_dir,
    atomic_path,
    check_output_dir,
    check_output_file,
)
from meshfit.io.cameras import CameraRecord, CameraSet, load_cameras, read_camera_records, save_cameras
from meshfit.io.dataset import DatasetError, Views, is_sequence, load_sequence, load_views, write_views
from meshfit.io.images import read_image, write_image
from meshfit.io.landmarks import (
    LandmarkError,
    load_landmark_definition,
    parse_landmark_definition,
    read_landmark_file,
    read_landmarks,
    write_landmark_file,
    write_landmarks,
)
from meshfit.io.meshes import MESH_SUFFIXES, MeshIOError, load_mesh, save_mesh

__all__ = [
    "MARKER",
    "MESH_SUFFIXES",
    "CameraRecord",
    "CameraSet",
    "DatasetError",
    "LandmarkError",
    "MeshIOError",
    "OutputError",
    "Views",
    "atomic_dir",
    "atomic_path",
    "check_output_dir",
    "check_output_file",
    "is_sequence",
    "load_cameras",
    "load_landmark_definition",
    "load_mesh",
    "load_sequence",
    "load_views",
    "parse_landmark_definition",
    "read_camera_records",
    "read_image",
    "read_landmark_file",
    "read_landmarks",
    "save_cameras",
    "save_mesh",
    "write_image",
    "write_landmark_file",
    "write_landmarks",
    "write_views",
]
