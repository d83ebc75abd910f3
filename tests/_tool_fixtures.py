"""Helpers for tests of the built-in offline tools: their cards and real sample photos.

Real photos come from scikit-image's bundled sample images (inside its wheel, no download).
"""

from __future__ import annotations

import os
from pathlib import Path

from orchestrator.cards import ToolCard, load_card

os.environ.setdefault("HF_HUB_OFFLINE", "1")

CARDS_DIR = Path(__file__).resolve().parent.parent / "orchestrator" / "cards" / "builtin"
OFFLINE_CARDS = (
    "minilm-embeddings",
    "rapidocr",
    "whisper-tiny-en",
    "piper-joe-en",
    "lingua-langid",
    "vader-sentiment",
    "haar-faces",
    "efficientnet-lite0",
)


def builtin_card(name: str) -> ToolCard:
    """The built-in card ``name``, loaded and validated from orchestrator/cards/builtin/."""
    return load_card(CARDS_DIR / f"{name}.yaml")


def write_photos(folder: Path) -> dict[str, Path]:
    """Write real photos as PNG files: astronaut (one face), chelsea (a cat), coffee (espresso).

    Also ``blank``, a plain white image. The photos ship inside scikit-image's wheel.
    """
    from PIL import Image
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name in ("astronaut", "chelsea", "coffee"):
        paths[name] = folder / f"{name}.png"
        Image.fromarray(getattr(data, name)()).save(paths[name])
    paths["blank"] = folder / "blank.png"
    Image.new("RGB", (320, 240), "white").save(paths["blank"])
    return paths
