"""Real captures in: ``import_capture`` turns a COLMAP model, ``transforms.json`` or ``cameras.json``
with its photos (lens distortion, any size, masks given or made from plates or a chroma key) into a
checked meshfit dataset."""

from meshfit.capture.importer import import_capture, is_capture
from meshfit.capture.masks import chroma_mask, clean_mask, plate_mask

__all__ = ["chroma_mask", "clean_mask", "import_capture", "is_capture", "plate_mask"]
