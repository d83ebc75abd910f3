"""Frontal face detection with OpenCV's Haar cascade (Viola-Jones)."""

from __future__ import annotations

from typing import Any

from orchestrator.cards.backend import CallContext
from orchestrator.execution.tools._io import file_input, scratch_file

__all__ = ["HaarFaceDetector", "load"]

_CASCADE = "haarcascade_frontalface_default.xml"


class HaarFaceDetector:
    """Finds upright, frontal faces; returns their boxes and a copy of the image with them drawn."""

    def __init__(
        self, *, scale_factor: float = 1.1, min_neighbors: int = 5, min_size: int = 30
    ) -> None:
        import cv2

        self.cascade = cv2.CascadeClassifier(cv2.data.haarcascades + _CASCADE)
        if self.cascade.empty():
            raise RuntimeError(
                f"OpenCV has no {_CASCADE}; install opencv-python-headless<5 (5.x ships none)"
            )
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.min_size = min_size

    def __call__(self, inputs: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        """Detect faces in the input ``image``."""
        import cv2
        import numpy as np
        from PIL import Image, ImageOps

        path = file_input(inputs, "image")
        with Image.open(path) as opened:
            rgb = np.asarray(ImageOps.exif_transpose(opened).convert("RGB"))
        gray = cv2.equalizeHist(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
        found = self.cascade.detectMultiScale(
            gray,
            scaleFactor=self.scale_factor,
            minNeighbors=self.min_neighbors,
            minSize=(self.min_size, self.min_size),
        )
        boxes = sorted(([int(v) for v in box] for box in found), key=lambda b: (b[0], b[1]))
        drawn = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        thickness = max(2, round(max(gray.shape) / 300))
        for x, y, w, h in boxes:
            cv2.rectangle(drawn, (x, y), (x + w, y + h), (0, 255, 0), thickness)
        out = scratch_file(ctx, "faces", ".png")
        if not cv2.imwrite(str(out), drawn):
            raise OSError(f"could not write {out}")
        return {"faces": [{"box": box} for box in boxes], "image": str(out)}


def load(options: dict[str, Any]) -> HaarFaceDetector:
    """Build the tool; options ``scale_factor`` (1.1), ``min_neighbors`` (5), ``min_size`` (30)."""
    return HaarFaceDetector(
        scale_factor=float(options.get("scale_factor", 1.1)),
        min_neighbors=int(options.get("min_neighbors", 5)),
        min_size=int(options.get("min_size", 30)),
    )
