"""Optical character recognition (printed text in images) with RapidOCR 3.x (PP-OCR, ONNX)."""

from __future__ import annotations

import logging
from typing import Any

from orchestrator.backends import CallContext
from orchestrator.tools._io import file_input

__all__ = ["RapidOCRReader", "load"]

# Engine settings, in RapidOCR's dotted form ("Section.key"); card options may override them.
_DEFAULT_PARAMS: dict[str, Any] = {"Global.log_level": "error"}


class RapidOCRReader:
    """Reads the lines of printed text in an image, top to bottom, with boxes and confidences."""

    def __init__(self, params: dict[str, Any] | None = None) -> None:
        import numpy as np
        from rapidocr import RapidOCR

        logging.getLogger("RapidOCR").setLevel(logging.ERROR)
        self.engine = RapidOCR(params={**_DEFAULT_PARAMS, **(params or {})})
        # RapidOCR loads its three models on the first call: do it now, not in a timed call.
        blank = np.full((64, 64, 3), 255, dtype=np.uint8)
        blank[24:40, 8:56] = 0
        self.engine(blank)

    def __call__(self, inputs: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        """Read the text in the input ``image``."""
        path = file_input(inputs, "image")
        result = self.engine(str(path))
        texts = list(result.txts or ())
        scores = list(result.scores or ())
        boxes = [] if result.boxes is None else result.boxes.tolist()
        lines = [
            {
                "text": text,
                "score": round(float(score), 4),
                "box": [[round(float(x), 1), round(float(y), 1)] for x, y in box],
            }
            for text, score, box in zip(texts, scores, boxes, strict=True)
        ]
        return {"text": "\n".join(texts), "lines": lines}


def load(options: dict[str, Any]) -> RapidOCRReader:
    """Build the tool; option ``params`` overrides RapidOCR settings, e.g. ``Det.box_thresh``."""
    return RapidOCRReader(params=dict(options.get("params") or {}))
