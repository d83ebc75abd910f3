"""The demo: make its own inputs with the offline models, then run real multi-model requests."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from orchestrator.cards.backend import CallContext
from orchestrator.cli.report import EventPrinter, print_result
from orchestrator.pipeline.orchestrator import Orchestrator, RunResult

__all__ = ["DEMO_REQUESTS", "make_inputs", "run_demo"]

SPOKEN = "I really love this wonderful sunny day, it makes me so happy."
WRITTEN = "Guten Morgen, wie geht es dir heute"
DEMO_REQUESTS = (
    "Transcribe demo.wav, tell me which language it is in and whether it sounds positive "
    "or negative, then read the answer aloud",
    "Read the text in demo.png and tell me which language it is in",
)


def render_text_png(text: str, path: Path) -> Path:
    """Write ``text`` in black on white into a PNG."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=40)
    width = int(font.getlength(text)) + 60
    image = Image.new("RGB", (width, 110), "white")
    ImageDraw.Draw(image).text((30, 30), text, fill="black", font=font)
    image.save(path)
    return path


def make_inputs(orchestrator: Orchestrator, folder: Path) -> tuple[Path, Path]:
    """Speak a sentence to demo.wav with the offline TTS card, render demo.png with text."""
    folder.mkdir(parents=True, exist_ok=True)
    tts = orchestrator.zoo.get("piper-joe-en").card
    outcome = orchestrator.executor.call(
        tts, {"text": SPOKEN}, CallContext(scratch=folder.resolve())
    )
    wav = folder / "demo.wav"
    Path(outcome.outputs["audio"]).replace(wav)
    png = render_text_png(WRITTEN, folder / "demo.png")
    return wav, png


def run_demo(folder: Path, console: Console | None = None) -> list[RunResult]:
    """Make the inputs in ``folder`` and run the demo requests there, printing everything."""
    console = console or Console()
    results = []
    with Orchestrator() as orchestrator:
        console.print(f"[bold]Making demo inputs in {folder}[/bold]")
        wav, png = make_inputs(orchestrator, folder)
        console.print(f"  {wav}: the TTS model speaking {SPOKEN!r}", markup=False)
        console.print(f"  {png}: an image with the text {WRITTEN!r}", markup=False)
        for number, request in enumerate(DEMO_REQUESTS, 1):
            console.rule(f"Request {number}")
            console.print(request, markup=False)
            printer = EventPrinter(console)
            result = orchestrator.run(
                request, base_dir=folder, out_dir=folder / f"run{number}", on_event=printer
            )
            print_result(console, result, printer.streamed)
            results.append(result)
    return results
