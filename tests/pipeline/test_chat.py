"""Conversations: follow-ups that refer to earlier turns, one budget for all turns, cancelling."""

from __future__ import annotations

import threading
from decimal import Decimal
from pathlib import Path

import pytest
from _chat_tools import write_slow_cards

from orchestrator import Config, Orchestrator
from orchestrator.budget import Budget
from orchestrator.errors import UserError
from orchestrator.pipeline.chat import ChatSession, Conversation, Turn


def test_a_reference_to_the_last_turn_brings_its_text_and_files(tmp_path):
    audio = tmp_path / "speech-1.wav"
    audio.write_bytes(b"RIFF")
    conversation = Conversation(
        turns=[Turn("Read it aloud", "Spoken audio: speech-1.wav.", files=[audio])]
    )
    prompt, files = conversation.inputs_for("Transcribe it")
    assert files == [audio.resolve()]
    assert prompt.startswith("Transcribe it: ")
    assert str(audio.resolve()) in prompt  # the file name in the quoted answer is a full path


def test_the_one_text_a_turn_made_is_what_it_refers_to():
    turn = Turn("Transcribe x.wav", "Transcript: hello there.", texts=["hello there"])
    prompt, _ = Conversation(turns=[turn]).inputs_for("Read that aloud")
    assert prompt == 'Read that aloud: "hello there"'


def test_a_request_with_its_own_input_is_left_alone():
    turn = Turn("Transcribe x.wav", "Transcript: hello.", texts=["hello"])
    conversation = Conversation(turns=[turn])
    own = 'Is "I hate rain" negative?'
    assert conversation.inputs_for(own) == (own, [])
    assert conversation.inputs_for("Read y.wav again")[0] == "Read y.wav again"


def test_no_earlier_turn_means_no_context():
    assert Conversation().inputs_for("Read it aloud") == ("Read it aloud", [])


def test_an_earlier_file_named_in_a_follow_up_gets_its_full_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    made = tmp_path / "runs" / "r1" / "speech-9f.wav"
    made.parent.mkdir(parents=True)
    made.write_bytes(b"RIFF")
    conversation = Conversation(turns=[Turn("say hi", "Spoken audio.", files=[made])])
    prompt, _ = conversation.inputs_for("transcribe speech-9f.wav please")
    assert prompt == f"transcribe {made} please"


def test_attached_files_go_with_the_next_request_only(tmp_path):
    image = tmp_path / "a.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n")
    conversation = Conversation()
    conversation.attach(image)
    assert conversation.inputs_for("what text is in the image")[1] == [image.resolve()]
    with pytest.raises(UserError, match="no such file"):
        conversation.attach(tmp_path / "missing.png")
    with pytest.raises(UserError, match="empty"):
        conversation.inputs_for("   ")


def test_a_conversation_is_rebuilt_from_openai_messages(tmp_path):
    root = tmp_path / "runs"
    (root / "abc123").mkdir(parents=True)
    (root / "abc123" / "speech-1.wav").write_bytes(b"RIFF")
    (tmp_path / "secret.wav").write_bytes(b"x")
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "Say hello"},
        {
            "role": "assistant",
            "content": "Spoken audio: /v1/files/abc123/speech-1.wav and /v1/files/nope/x.wav",
        },
        {"role": "user", "content": [{"type": "text", "text": "Transcribe it"}]},
    ]
    conversation, request = Conversation.from_messages(messages, root)
    assert request == "Transcribe it"
    assert [t.request for t in conversation.turns] == ["Say hello"]
    assert conversation.turns[0].files == [(root / "abc123" / "speech-1.wav").resolve()]
    assert "/v1/files" not in conversation.turns[0].answer
    _, files = conversation.inputs_for(request)
    assert files == [(root / "abc123" / "speech-1.wav").resolve()]
    with pytest.raises(UserError, match="last message"):
        Conversation.from_messages(messages[:3], root)


def test_a_follow_up_uses_the_transcript_of_the_turn_before(orchestrator, demo_inputs):
    session = ChatSession(orchestrator, Budget(usd=Decimal("0.01")))
    first = session.send(f"Transcribe {demo_inputs / 'demo.wav'}")
    assert first.status == "ok"
    transcript = first.steps[0].outputs["text"]
    second = session.send("Is it positive or negative?")
    assert second.status == "ok", second.message
    step = second.plan.subtasks[0]
    assert step.task == "text-classification"
    assert step.args["text"].value == " ".join(transcript.split())
    assert "positive" in second.answer.lower()
    spent = Decimal(first.spent["usd"]) + Decimal(second.spent["usd"])
    assert session.spent_usd == spent > 0
    assert session.budget_left().usd == Decimal("0.01") - spent
    assert second.budget_left["usd"] is not None
    assert Decimal(str(second.budget_left["usd"])) == Decimal("0.01") - spent


def test_it_means_the_transcript_not_the_label_beside_it(orchestrator, demo_inputs):
    session = ChatSession(orchestrator)
    first = session.send(f"Transcribe {demo_inputs / 'demo.wav'} and tell me if it is positive")
    assert [s.task for s in first.steps] == ["automatic-speech-recognition", "text-classification"]
    transcript = " ".join(first.steps[0].outputs["text"].split())
    prompt, _ = session.conversation.inputs_for("Read it aloud")
    assert prompt == f'Read it aloud: "{transcript}"'


def test_the_conversation_budget_stops_a_later_turn(orchestrator, demo_inputs):
    session = ChatSession(orchestrator, Budget(calls=1))
    assert session.send(f"Transcribe {demo_inputs / 'demo.wav'}").status == "ok"
    assert session.budget_left().calls == 0
    later = session.send("Is it positive or negative?")
    assert later.status == "budget_exhausted"
    assert later.spent["calls"] == 0


@pytest.fixture(scope="module")
def slow_orchestrator(tmp_path_factory):
    folder = write_slow_cards(tmp_path_factory.mktemp("cards"), sleep=1.5)
    config = Config(runs_dir=tmp_path_factory.mktemp("runs"), card_dirs=[folder])
    with Orchestrator(config, checkpoint_path=config.runs_dir / "c.sqlite") as orch:
        yield orch


SLOW_REQUEST = 'Summarize "the quick brown fox jumps over the lazy dog" then read the summary aloud'


def test_a_card_whose_code_lies_beside_it_runs_in_the_sandbox(slow_orchestrator):
    entry = slow_orchestrator.zoo.get("slow-summary")
    assert entry.available, entry.unavailable
    result = slow_orchestrator.run('Summarize "one two three four five six"')
    assert result.status == "ok", result.message
    assert result.steps[0].card == "slow-summary"
    assert result.steps[0].outputs["summary"].startswith("one two three four #")


def test_cancel_keeps_the_finished_step_and_resume_does_not_redo_it(slow_orchestrator):
    cancel = threading.Event()

    def on_event(event):
        if event["type"] == "step_started" and event["step"] == "s1":
            cancel.set()  # as Ctrl-C would, while s1 runs

    result = slow_orchestrator.run(SLOW_REQUEST, on_event=on_event, cancel=cancel)
    assert result.status == "cancelled"
    assert f"runs resume {result.run_id}" in result.message
    s1, s2 = result.steps
    assert (s1.status, s2.status) == ("done", "waiting")
    summary = s1.outputs["summary"]
    assert result.spent["calls"] == 1
    assert not result.artifacts

    resumed = slow_orchestrator.resume(result.run_id)
    assert resumed.status == "ok", resumed.message
    assert resumed.steps[0].outputs["summary"] == summary  # kept, not computed again
    assert resumed.spent["calls"] == 2
    assert Path(resumed.artifacts[0]).is_file()


def test_a_cancelled_turn_leaves_the_session_usable(slow_orchestrator):
    session = ChatSession(slow_orchestrator, Budget(usd=Decimal("1")))
    cancel = threading.Event()
    cancel.set()  # cancelled before anything ran
    first = session.send(SLOW_REQUEST, cancel=cancel)
    assert first.status == "cancelled"
    assert first.spent["calls"] == 0
    second = session.send('Summarize "alpha beta gamma delta epsilon"')
    assert second.status == "ok"
    assert [t.status for t in session.conversation.turns] == ["cancelled", "ok"]
    assert session.spent_usd == Decimal(second.spent["usd"]) > 0


def test_text_given_in_the_request_is_its_own_input():
    turn = Turn("Transcribe x.wav", "Transcript: hello.", texts=["hello"])
    conversation = Conversation(turns=[turn])
    for own in ("Read this aloud: I love this sunny day", "Read 'good morning' aloud"):
        assert conversation.inputs_for(own) == (own, [])


def test_a_turn_that_made_nothing_is_not_what_it_refers_to():
    done = Turn("Transcribe x.wav", "Transcript: hello.", texts=["hello"])
    rejected = Turn("Describe it", "This needs an image input.", status="rejected")
    prompt, _ = Conversation(turns=[done, rejected]).inputs_for("Is it positive?")
    assert prompt == 'Is it positive?: "hello"'


def test_files_attached_to_earlier_messages_are_remembered(tmp_path):
    image = tmp_path / "scan.png"
    image.write_bytes(b"png")
    messages = [
        {"role": "user", "content": "What text is in the image?"},
        {"role": "assistant", "content": "Text in image: Guten Morgen."},
        {"role": "user", "content": "Show me that image again"},
    ]
    asked = []

    def attachments(index):
        asked.append(index)
        return [image] if index == 0 else []

    conversation, request = Conversation.from_messages(messages, tmp_path, attachments)
    assert asked == [0]  # the last message's files are the caller's own business
    assert conversation.turns[0].files == [image]
    assert conversation.inputs_for(request)[1] == [image]


def test_text_after_the_question_is_the_requests_own_input():
    turn = Turn("Transcribe x.wav", "Transcript: hello.", texts=["hello"])
    own = "Is this positive? I absolutely love this wonderful sunny day"
    assert Conversation(turns=[turn]).inputs_for(own) == (own, [])


def test_it_after_a_label_turn_means_the_text_that_turn_worked_on(orchestrator):
    session = ChatSession(orchestrator)
    first = session.send('Is "I hate rainy days, they make me miserable" positive or negative?')
    assert first.status == "ok" and "negative" in first.answer.lower()
    second = session.send("Which language is it in?")
    assert second.plan.subtasks[0].args["text"].value == "I hate rainy days, they make me miserable"
    assert second.steps[0].card == "lingua-langid" and "English" in second.answer
    third = session.send("Is it positive or negative?")  # still that text, not a label
    assert third.plan.subtasks[0].args["text"].value.startswith("I hate rainy days")
    assert third.steps[0].card == "vader-sentiment"


def test_a_conversation_rebuilt_from_messages_knows_what_it_meant(tmp_path):
    messages = [
        {"role": "user", "content": 'Is "I love it" positive?'},
        {"role": "assistant", "content": "Sentiment: positive."},
        {"role": "user", "content": "Which language is it in?"},
        {"role": "assistant", "content": "Language: English."},
        {"role": "user", "content": "And is it negative?"},
    ]
    conversation, request = Conversation.from_messages(messages, tmp_path)
    assert [t.analysed for t in conversation.turns] == ["I love it", "I love it"]
    assert conversation.inputs_for(request)[0] == 'And is it negative?: "I love it"'


def test_attach_reads_paths_as_a_terminal_pastes_them(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "dir with space"
    folder.mkdir()
    scan = folder / "my scan.png"
    scan.write_bytes(b"\x89PNG\r\n\x1a\n")
    for typed in ('"dir with space/my scan.png"', r"dir\ with\ space/my\ scan.png"):
        assert Conversation().attach(typed) == scan.resolve()
    with pytest.raises(UserError, match="is a folder; attach its files one by one"):
        Conversation().attach("'dir with space'")
    (tmp_path / "notes.pdf").write_bytes(b"%PDF")
    with pytest.raises(UserError, match="notes.pdf is not a file type any step reads"):
        Conversation().attach("notes.pdf")


def test_chat_says_at_start_which_of_your_cards_cannot_run(tmp_path, monkeypatch):
    import io

    from rich.console import Console

    from orchestrator.cards.zoo import Zoo
    from orchestrator.cli.chat import chat_loop
    from orchestrator.config import Config
    from orchestrator.pipeline.orchestrator import Orchestrator

    cards = tmp_path / "cards"
    cards.mkdir()
    (cards / "mine.yaml").write_text(
        "name: mine\ntask: summarization\ndescription: Shortens long reports into key points.\n"
        "inputs: [{name: text, type: text}]\noutputs: [{name: summary, type: text}]\n"
        "backend: {kind: python, entry: 'shoutt_missing:load'}\n"
    )
    zoo = Zoo.load([cards])
    assert any(not e.available for e in zoo if e.card.name != "mine")  # built-ins that cannot
    out = io.StringIO()
    console = Console(file=out, width=300)

    def leave(*_args, **_kwargs):
        raise EOFError

    monkeypatch.setattr(console, "input", leave)
    with Orchestrator(Config(runs_dir=tmp_path / "runs"), zoo=zoo, durable=False) as orch:
        chat_loop(console, ChatSession(orch))
    lines = [line for line in out.getvalue().splitlines() if line.startswith("Your card")]
    assert len(lines) == 1 and "Your card mine (" in lines[0]
    assert "shoutt_missing" in lines[0]


# -- what refers back, and what "it" hands on ---------------------------------------------------


@pytest.mark.parametrize(
    "request_text",
    [
        "Read it aloud",
        "what language is that?",
        "Translate the transcript into German",
        "now summarise the answer",
        "say those again",
    ],
)
def test_a_request_that_refers_to_an_earlier_turn(request_text):
    from orchestrator.pipeline.chat import refers_back

    assert refers_back(request_text)


@pytest.mark.parametrize(
    "request_text",
    [
        "Write a short story about a cat and then read it aloud",  # "it" is its own story
        "Write a poem about a dragon, then read it aloud",
        "Transcribe meeting.wav",
        "Tell me a joke",
        "What is the capital of France?",
    ],
)
def test_a_self_contained_request_does_not_refer_back(request_text):
    from orchestrator.pipeline.chat import refers_back

    assert not refers_back(request_text)


def test_a_self_contained_request_picks_up_nothing_from_earlier_turns(tmp_path):
    notes = tmp_path / "review.txt"
    notes.write_text("The service was slow.")
    turn = Turn("Write a haiku", "smollm2-135m-chat answered: Waves.", texts=["Waves."])
    conversation = Conversation(turns=[turn])
    request = "Write a poem about a dragon and then read it aloud"
    assert conversation.inputs_for(request) == (request, [])


def test_it_after_a_spoken_turn_is_the_speech_it_made(tmp_path):
    speech = tmp_path / "speech-1.wav"
    speech.write_bytes(b"RIFF")
    turn = Turn(
        "Read this aloud: 'the weather is lovely today'",
        "Spoken audio: speech-1.wav.",
        files=[speech],
        analysed="the weather is lovely today",
        made=[speech],
    )
    prompt, files = Conversation(turns=[turn]).inputs_for("Transcribe it")
    # The file it made, and not also the text it was given (which no step would read).
    assert (prompt, files) == ("Transcribe it", [speech.resolve()])


def test_an_answer_handed_to_a_tool_has_no_links_paths_or_markup():
    from orchestrator.pipeline.chat import _quotable

    answer = (
        "**Transcript** of [memo.wav](/v1/files/ab12/memo.wav): hello there. "
        "Audio: /v1/files/ab12/speech-1.wav, see https://example.com/x and /tmp/runs/a/b.wav"
    )
    plain = _quotable(answer)
    for leftover in ("/v1/files", "https://", "/tmp/runs", "**", "]("):
        assert leftover not in plain
    assert "hello there" in plain and "memo.wav" in plain


def test_a_follow_up_lacking_its_input_takes_it_from_the_turn_before(tmp_path, builtin_zoo):
    from orchestrator.pipeline.chat import missing_input

    photo, speech = tmp_path / "cat.png", tmp_path / "memo.wav"
    photo.write_bytes(b"\x89PNG\r\n\x1a\n")
    speech.write_bytes(b"RIFF")
    looked = Turn("what's in this picture?", "Image class of cat.png: tabby.", files=[photo])
    conversation = Conversation(turns=[looked])
    missing = missing_input(builtin_zoo)
    # "how many faces?" names no image: the one the last turn looked at is meant.
    assert conversation.inputs_for("and how many faces?", missing=missing) == (
        "and how many faces?",
        [photo.resolve()],
    )
    # A request that needs no input, or another kind than the last turn had, takes nothing.
    assert conversation.inputs_for("tell me a joke", missing=missing) == ("tell me a joke", [])
    assert conversation.inputs_for("transcribe the memo", missing=missing)[1] == []
    heard = Conversation(turns=[Turn("transcribe memo.wav", "Transcript: hi.", files=[speech])])
    assert heard.inputs_for("how many faces?", missing=missing)[1] == []


def test_the_photo_of_a_refused_turn_goes_with_the_follow_up_that_needs_one(tmp_path, builtin_zoo):
    from orchestrator.pipeline.chat import missing_input

    photo = tmp_path / "face.png"
    photo.write_bytes(b"\x89PNG\r\n\x1a\n")
    refusal = "no card of the zoo tells who someone is from a photo"
    asked = Turn("who is this", refusal, files=[photo], status="unservable")
    missing = missing_input(builtin_zoo)
    # Nothing was done with the photo; "how many faces then" is asked of it.
    conversation = Conversation(turns=[asked])
    assert conversation.inputs_for("ok how many faces then", missing=missing) == (
        "ok how many faces then",
        [photo.resolve()],
    )
    # The refusal is never handed on as a text, and a later turn does not reach back to it.
    assert conversation.inputs_for("summarize it", missing=missing)[1] == []
    told = Turn("tell me a joke", "A joke.", status="ok")
    assert Conversation(turns=[asked, told]).inputs_for("how many faces?", missing=missing)[1] == []


def test_a_follow_up_referring_to_a_photo_hands_the_photo_not_the_answer_about_it(
    tmp_path, builtin_zoo
):
    from orchestrator.pipeline.chat import missing_input

    photo, speech = tmp_path / "cat.png", tmp_path / "memo.wav"
    photo.write_bytes(b"\x89PNG\r\n\x1a\n")
    speech.write_bytes(b"RIFF")
    missing = missing_input(builtin_zoo)
    looked = Turn("what's in this photo", "Image class of cat.png: tabby.", files=[photo])
    # The answer quoted as a text no step reads would leave the run partial.
    faces = Conversation(turns=[looked]).inputs_for("how many faces are in it", missing=missing)
    assert faces == ("how many faces are in it", [photo.resolve()])
    # "read it aloud" reads the answer, which the plan does read.
    prompt, _ = Conversation(turns=[looked]).inputs_for("read it aloud", missing=missing)
    assert "tabby" in prompt
    # "what did I say" after a recording is about the recording (not a photo's text).
    heard = Turn("how do i sound", "Sentiment of memo.wav: positive.", files=[speech])
    said = Conversation(turns=[heard]).inputs_for("what did i say exactly", missing=missing)
    assert said[1] == [speech.resolve()]


@pytest.mark.parametrize(
    "follow_up, files, expected",
    [
        ('what about "best dinner ever"', [], 'tell me the mood of "best dinner ever"'),
        ("and this one?", ["face.png"], 'tell me the mood of "the soup was cold"'),
        ("same for face.png too", [], 'tell me the mood of "the soup was cold"'),
    ],
)
def test_a_follow_up_giving_only_a_new_input_asks_the_last_request_again(
    tmp_path, follow_up, files, expected
):
    face = tmp_path / "face.png"
    face.write_bytes(b"\x89PNG\r\n\x1a\n")
    before = Turn('tell me the mood of "the soup was cold"', "Sentiment: negative.")
    conversation = Conversation(turns=[before])
    prompt, attached = conversation.inputs_for(follow_up, [tmp_path / f for f in files])
    assert prompt.startswith(expected), prompt
    assert attached == [tmp_path / f for f in files]


def test_an_input_swap_replaces_the_file_the_last_request_named(tmp_path):
    cat, face = tmp_path / "cat.png", tmp_path / "face.png"
    for path in (cat, face):
        path.write_bytes(b"\x89PNG\r\n\x1a\n")
    conversation = Conversation(turns=[Turn(f"how many faces in {cat}", "none", files=[cat])])
    prompt, attached = conversation.inputs_for("and this one?", [face])
    assert prompt == "how many faces in face.png" or prompt == f"how many faces in {face}"
    assert attached == [face]
    # A follow-up with words of its own is its own request.
    prompt, _ = conversation.inputs_for("and read this one aloud", [face])
    assert prompt == "and read this one aloud"


def test_a_swap_of_a_swap_still_asks_the_first_request(tmp_path, builtin_zoo):
    session = ChatSession(Orchestrator(Config(), zoo=builtin_zoo))
    try:
        first = session.send('is "I love this" positive?')
        again = session.send('what about "I hate this"')
        third = session.send('and "what a lovely day"')
    finally:
        session.orchestrator.close()
    assert [r.steps[0].task for r in (first, again, third)] == ["text-classification"] * 3
    assert "positive" in third.answer.lower() and "negative" in again.answer.lower()


def test_a_conversation_rebuilt_from_messages_knows_what_a_swap_asked(tmp_path):
    messages = [
        {"role": "user", "content": 'is "I love this" positive?'},
        {"role": "assistant", "content": "Sentiment: positive."},
        {"role": "user", "content": 'what about "I hate this"'},
        {"role": "assistant", "content": "Sentiment: negative."},
        {"role": "user", "content": 'and "what a lovely day"'},
    ]
    conversation, request = Conversation.from_messages(messages, tmp_path)
    assert conversation.inputs_for(request)[0] == 'is "what a lovely day" positive?'
