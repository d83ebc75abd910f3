"""Language identification with Lingua, restricted to a chosen set of languages."""

from __future__ import annotations

from typing import Any

from orchestrator.cards.backend import CallContext
from orchestrator.execution.tools._io import text_input

__all__ = ["DEFAULT_LANGUAGES", "LinguaIdentifier", "load"]

DEFAULT_LANGUAGES: tuple[str, ...] = ("en", "fr", "de", "es", "it", "pt", "nl")


class LinguaIdentifier:
    """Tells which language a text is written in, among a fixed set of candidate languages.

    A restricted set is both more accurate and much faster to load: all 75 languages take
    about 13 s on the first call, seven take about 2 s.
    """

    def __init__(self, languages: list[str] | str = DEFAULT_LANGUAGES, *, top: int = 3) -> None:
        from lingua import LanguageDetectorBuilder

        if languages == "all":
            builder = LanguageDetectorBuilder.from_all_languages()
        else:
            builder = LanguageDetectorBuilder.from_iso_codes_639_1(*_iso_codes(languages))
        self.top = top
        self.detector = builder.with_preloaded_language_models().build()

    def __call__(self, inputs: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        """Identify the language of the input ``text``."""
        text = text_input(inputs)
        values = self.detector.compute_language_confidence_values(text)
        scores = [
            {
                "language": value.language.name.title(),
                "iso": value.language.iso_code_639_1.name.lower(),
                "confidence": round(value.value, 4),
            }
            for value in values[: self.top]
            if value.value > 0
        ]
        label = scores[0]["language"] if scores else "unknown"
        return {"label": label, "scores": scores}


def _iso_codes(languages: list[str] | tuple[str, ...] | str) -> list[Any]:
    from lingua import IsoCode639_1

    if isinstance(languages, str):
        languages = [part.strip() for part in languages.split(",")]
    codes = []
    for code in languages:
        try:
            codes.append(IsoCode639_1.from_str(code.lower()))
        except ValueError:
            raise ValueError(
                f"unknown ISO 639-1 language code '{code}' in option 'languages'"
            ) from None
    if len(codes) < 2:
        raise ValueError("option 'languages' needs at least two ISO 639-1 codes, or 'all'")
    return codes


def load(options: dict[str, Any]) -> LinguaIdentifier:
    """Build the tool; ``languages``: ISO 639-1 codes or "all"; ``top``: scores returned (3)."""
    return LinguaIdentifier(
        options.get("languages", DEFAULT_LANGUAGES), top=int(options.get("top", 3))
    )
