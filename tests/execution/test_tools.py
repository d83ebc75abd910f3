"""The built-in offline tools (orchestrator/execution/tools/), run in-process from their cards."""

from __future__ import annotations

import math
import wave
from pathlib import Path

import pytest
from _tool_fixtures import OFFLINE_CARDS, builtin_card, write_photos

from orchestrator.cards.backend import CallContext, load_tool, unavailable_reason

SENTENCE = "Please send the quarterly report to Maria before Friday afternoon."


@pytest.fixture
def ctx(tmp_path: Path) -> CallContext:
    return CallContext(scratch=tmp_path / "scratch")


def _tool(name: str):
    return load_tool(builtin_card(name))


# Each model loads once for the whole module.
@pytest.fixture(scope="module")
def embedder():
    return _tool("minilm-embeddings")


@pytest.fixture(scope="module")
def ocr():
    return _tool("rapidocr")


@pytest.fixture(scope="module")
def transcriber():
    return _tool("whisper-tiny-en")


@pytest.fixture(scope="module")
def speaker():
    return _tool("piper-joe-en")


@pytest.fixture(scope="module")
def langid():
    return _tool("lingua-langid")


@pytest.fixture(scope="module")
def sentiment():
    return _tool("vader-sentiment")


@pytest.fixture(scope="module")
def face_detector():
    return _tool("haar-faces")


@pytest.fixture(scope="module")
def classifier():
    return _tool("efficientnet-lite0")


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> dict[str, Path]:
    return write_photos(tmp_path_factory.mktemp("photos"))


def _under(path: str, folder: Path) -> bool:
    return Path(path).resolve().is_relative_to(folder.resolve())


@pytest.mark.parametrize("name", OFFLINE_CARDS)
def test_card_is_available_offline(name):
    card = builtin_card(name)
    assert card.name == name
    assert card.backend.kind == "python"
    assert card.backend.entry.startswith("orchestrator.execution.tools.")
    assert card.cost.usd_per_second > 0 and card.cost.usd_per_call == 0
    assert not card.requires.network and not card.requires.gpu
    assert unavailable_reason(card) is None


@pytest.fixture(scope="module")
def speech(speaker, tmp_path_factory) -> Path:
    """SENTENCE spoken by the TTS tool (shared by the TTS and speech recognition tests)."""
    scratch = tmp_path_factory.mktemp("speech")
    out = speaker({"text": SENTENCE}, CallContext(scratch=scratch))
    assert _under(out["audio"], scratch)
    return Path(out["audio"])


def test_tts_writes_a_valid_wav_of_speech(speech):
    with wave.open(str(speech)) as wav:
        channels, width, rate = wav.getnchannels(), wav.getsampwidth(), wav.getframerate()
        frames = wav.readframes(wav.getnframes())
    seconds = len(frames) / (width * channels * rate)
    assert (channels, width, rate) == (1, 2, 22050)
    assert 2.0 < seconds < 10.0  # ten words
    samples = memoryview(frames).cast("h")
    rms = math.sqrt(sum(s * s for s in samples[::10]) / len(samples[::10]))
    assert rms > 500  # speech, not silence


def test_tts_names_each_file_uniquely(speaker, ctx):
    first = speaker({"text": "One."}, ctx)["audio"]
    second = speaker({"text": "One."}, ctx)["audio"]
    assert first != second and _under(first, ctx.scratch)


def test_whisper_transcribes_the_spoken_sentence(transcriber, speech, ctx):
    text = transcriber({"audio": str(speech)}, ctx)["text"].lower()
    for word in ("send", "quarterly", "report", "maria", "friday"):
        assert word in text
    assert ctx.usage.output_tokens > 5


def test_lingua_identifies_french_and_german(langid, ctx):
    french = langid({"text": "Je voudrais réserver une table pour deux personnes ce soir."}, ctx)
    german = langid({"text": "Ich habe heute leider keine Zeit, weil ich arbeiten muss."}, ctx)
    assert french["label"] == "French" and german["label"] == "German"
    assert french["scores"][0] == {
        "language": "French",
        "iso": "fr",
        "confidence": french["scores"][0]["confidence"],
    }
    confidences = [s["confidence"] for s in german["scores"]]
    assert confidences == sorted(confidences, reverse=True) and confidences[0] > 0.5


def test_lingua_rejects_an_unknown_language_code():
    from orchestrator.execution.tools import lingua_langid

    with pytest.raises(ValueError, match="'xx'"):
        lingua_langid.load({"languages": ["en", "xx"]})


def test_vader_tells_positive_negative_and_neutral(sentiment, ctx):
    good = sentiment({"text": "What a fantastic, delightful day!"}, ctx)
    bad = sentiment({"text": "This was the worst service I have ever had, awful and rude."}, ctx)
    plain = sentiment({"text": "The meeting is on Tuesday."}, ctx)
    assert (good["label"], bad["label"], plain["label"]) == ("positive", "negative", "neutral")
    assert good["scores"]["compound"] > 0.5 > -0.5 > bad["scores"]["compound"]
    assert set(plain["scores"]) == {"neg", "neu", "pos", "compound"}


def test_tools_reject_missing_or_empty_inputs(sentiment, face_detector, ctx):
    with pytest.raises(ValueError, match="'text' is empty"):
        sentiment({"text": "   "}, ctx)
    with pytest.raises(ValueError, match="'text' must be text"):
        sentiment({}, ctx)
    with pytest.raises(FileNotFoundError, match="no such file"):
        face_detector({"image": str(ctx.scratch / "missing.png")}, ctx)


def test_ocr_reads_rendered_text(ocr, tmp_path, ctx):
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=40)
    image = Image.new("RGB", (440, 190), "white")
    draw = ImageDraw.Draw(image)
    draw.text((20, 25), "Invoice number 4721", fill="black", font=font)
    draw.text((20, 105), "Total due: 58 dollars", fill="black", font=font)
    image.save(tmp_path / "invoice.png")

    out = ocr({"image": str(tmp_path / "invoice.png")}, ctx)
    assert out["text"].splitlines() == ["Invoice number 4721", "Total due: 58 dollars"]
    first, second = out["lines"]
    assert first["score"] > 0.9 and len(first["box"]) == 4
    assert max(y for _, y in first["box"]) <= min(y for _, y in second["box"]) + 5


def test_ocr_reads_a_wide_strip_as_one_line(ocr, tmp_path, ctx):
    # Unpadded, RapidOCR blew this 110 px tall strip up 6.7 times and split it into fragments.
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=40)
    text = "Guten Morgen, wie geht es dir heute"
    image = Image.new("RGBA", (int(font.getlength(text)) + 60, 110), (0, 0, 0, 0))
    ImageDraw.Draw(image).text((30, 30), text, fill="black", font=font)
    image.save(tmp_path / "strip.png")  # transparent background: flattened onto white

    out = ocr({"image": str(tmp_path / "strip.png")}, ctx)
    assert out["text"] == text
    [(left, top), *_, (_, bottom)] = out["lines"][0]["box"]
    assert 10 < left < 50 and 20 < top < bottom < 95  # in the original image's coordinates


def test_ocr_returns_nothing_for_an_image_without_text(ocr, photos, ctx):
    assert ocr({"image": str(photos["blank"])}, ctx) == {"text": "", "lines": []}


def test_face_detector_finds_the_astronauts_face(face_detector, photos, ctx):
    from PIL import Image

    out = face_detector({"image": str(photos["astronaut"])}, ctx)
    assert len(out["faces"]) == 1
    x, y, w, h = out["faces"][0]["box"]
    assert 150 < x + w / 2 < 300 and 60 < y + h / 2 < 170 and 60 < w < 150  # her face
    assert _under(out["image"], ctx.scratch)
    with Image.open(out["image"]) as drawn:
        assert drawn.size == (512, 512)
        assert drawn.getpixel((x, y + h // 2)) == (0, 255, 0)  # the green box


def test_face_detector_finds_no_face_in_a_blank_image(face_detector, photos, ctx):
    assert face_detector({"image": str(photos["blank"])}, ctx)["faces"] == []


def test_efficientnet_names_an_espresso(classifier, photos, ctx):
    out = classifier({"image": str(photos["coffee"])}, ctx)
    assert out["label"] == "espresso"
    scores = [c["score"] for c in out["top5"]]
    assert len(scores) == 5 and scores == sorted(scores, reverse=True)
    assert scores[0] > 0.5 and sum(scores) <= 1.0001


def test_efficientnet_sees_a_cat(classifier, photos, ctx):
    top = classifier({"image": str(photos["chelsea"])}, ctx)["top5"][0]
    assert 281 <= top["class_id"] <= 285  # the domestic cat classes of ImageNet
    assert "cat" in top["synonyms"]


def test_minilm_embeds_meaning(embedder, ctx):
    def embed(text: str) -> list[float]:
        return embedder({"text": text}, ctx)["embedding"]

    query = embed("How do I reset my password?")
    paraphrase = embed("I forgot my password and need to change it.")
    unrelated = embed("The cathedral was built in the twelfth century.")
    assert len(query) == 384 and all(isinstance(v, float) for v in query)
    assert math.isclose(math.fsum(v * v for v in query), 1.0, rel_tol=1e-4)

    def cosine(a: list[float], b: list[float]) -> float:
        return math.fsum(x * y for x, y in zip(a, b, strict=True))

    assert cosine(query, paraphrase) > 0.5 > 0.2 > cosine(query, unrelated)
    assert ctx.usage.input_tokens > 10
