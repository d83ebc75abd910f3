import time
from pathlib import Path

import pytest

from orchestrator.cards.zoo import Zoo
from orchestrator.errors import NoCapableTool, PlanError, UnknownPlanner, UserError
from orchestrator.planning import get_planner
from orchestrator.planning.embedded import split_clauses
from orchestrator.planning.validate import validate_plan

DEMO = (
    "Transcribe demo.wav, tell me which language it is in and whether it sounds positive "
    "or negative, then read the answer aloud"
)


@pytest.fixture(scope="module")
def planner():
    return get_planner("embedded")


def test_split_keeps_file_names_whole():
    assert split_clauses("Transcribe demo.wav. Then read it aloud") == [
        "Transcribe demo.wav",
        "read it aloud",
    ]


def test_split_keeps_numbers_with_thousands_separators_whole():
    # The comma in "25,000" is part of the number; a comma before a space still joins clauses.
    assert split_clauses("Transfer 25,000 yuan to Li, then check my balance") == [
        "Transfer 25,000 yuan to Li",
        "check my balance",
    ]


def test_demo_request_is_a_typed_chain(planner, builtin_zoo, tmp_path):
    (tmp_path / "demo.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt ")
    plan = planner.plan(DEMO, builtin_zoo)
    validate_plan(plan, builtin_zoo, base_dir=tmp_path)
    tasks = [s.task for s in plan.subtasks]
    assert tasks == [
        "automatic-speech-recognition",
        "text-classification",
        "text-classification",
        "text-to-speech",
    ]
    asr, lang, sentiment, tts = plan.subtasks
    assert asr.args["audio"].path == "demo.wav"
    # both classifications read the transcript, not each other's labels
    assert lang.args["text"].step == asr.id and sentiment.args["text"].step == asr.id
    # "the answer" composes every earlier result
    assert tts.args["text"].kind == "compose"
    assert tts.args["text"].steps == [asr.id, lang.id, sentiment.id]
    assert tts.deps == [asr.id, lang.id, sentiment.id]


def test_image_request(planner, builtin_zoo):
    plan = planner.plan(
        "Read the text in scan.png and tell me which language it is in", builtin_zoo
    )
    assert [s.task for s in plan.subtasks] == ["image-to-text", "text-classification"]
    assert plan.subtasks[1].args["text"].step == plan.subtasks[0].id


def test_each_given_image_gets_a_step(planner, builtin_zoo):
    images = [Path("a.png"), Path("b.png")]
    plan = planner.plan("Read the text in these images", builtin_zoo, files=images)
    assert [(s.task, s.args["image"].path) for s in plan.subtasks] == [
        ("image-to-text", "a.png"),
        ("image-to-text", "b.png"),
    ]
    both = planner.plan(
        "Read the text in the first image and in the second image", builtin_zoo, files=images
    )
    assert [s.args["image"].path for s in both.subtasks] == ["a.png", "b.png"]
    # A file read on the way to another step gets the same way: its text, and its language.
    fed = planner.plan(
        "Read the text in these images and tell me which language it is in",
        builtin_zoo,
        files=images,
    )
    readers = [s.id for s in fed.subtasks if "image" in s.args]
    assert [s.args["image"].path for s in fed.subtasks if "image" in s.args] == ["a.png", "b.png"]
    languages = [s for s in fed.subtasks if s.task == "text-classification"]
    assert sorted(s.args["text"].step for s in languages) == sorted(readers)


def test_a_text_file_is_the_text_input(planner, builtin_zoo):
    plan = planner.plan("Is this text positive or negative?", builtin_zoo, files=[Path("r.txt")])
    [step] = plan.subtasks
    assert step.task == "text-classification" and step.args["text"].path == "r.txt"


def test_a_quoted_file_name_may_hold_spaces(planner, builtin_zoo):
    plan = planner.plan('Transcribe "my recording.wav"', builtin_zoo)
    assert plan.subtasks[0].args["audio"].path == "my recording.wav"
    notes = planner.plan("Which language is 'notes dir/mes notes.txt' in?", builtin_zoo)
    [step] = notes.subtasks
    assert step.args["text"].kind == "file" and step.args["text"].path == "notes dir/mes notes.txt"


def test_quoted_text_is_the_input(planner, builtin_zoo):
    plan = planner.plan("Say 'good morning everyone' out loud", builtin_zoo)
    [tts] = plan.subtasks
    assert tts.task == "text-to-speech"
    assert tts.args["text"].value == "good morning everyone"


def test_planner_is_deterministic_and_fast(planner, builtin_zoo):
    start = time.perf_counter()
    plans = [planner.plan(DEMO, builtin_zoo) for _ in range(20)]
    per_request = (time.perf_counter() - start) / 20
    assert all(p == plans[0] for p in plans)
    assert per_request < 0.5


def test_empty_request(planner, builtin_zoo):
    with pytest.raises(UserError, match="empty"):
        planner.plan("   ", builtin_zoo)


def test_request_no_card_matches_lists_what_the_zoo_can_do(planner, builtin_zoo):
    with pytest.raises(NoCapableTool, match="automatic-speech-recognition"):
        planner.plan("Book me a flight to Lisbon for next Tuesday", builtin_zoo)


def test_missing_input_file_says_what_to_attach(planner, builtin_zoo):
    with pytest.raises(PlanError, match="needs an audio input.*name an audio file"):
        planner.plan("Transcribe the recording", builtin_zoo)


def test_unknown_planner_lists_known():
    with pytest.raises(UnknownPlanner, match="embedded"):
        get_planner("telepathy")


# -- planning over a tool set by name (plan_tools) ----------------------------------------------


def _train_tools(examples=()):
    from orchestrator.planning import ToolSet, ToolSpec

    tools = [
        ToolSpec("account_login", "Log in to an online account with an id and password"),
        ToolSpec("search_train", "Search for train tickets between two cities on a date"),
        ToolSpec("train_ticket_booking", "Book a train ticket for a passenger"),
        ToolSpec("weather_query", "Query the weather forecast of a city"),
        ToolSpec("send_sms", "Send an SMS text message to a phone number"),
    ]
    links = {("search_train", "train_ticket_booking"), ("weather_query", "send_sms")}
    return ToolSet(tools, links, list(examples))


def _train_examples():
    from orchestrator.planning import Example

    cities = ["Paris", "Lyon", "Rome", "Oslo", "Bergen", "Milan"]
    examples = []
    for a, b in zip(cities, cities[1:], strict=False):
        tools = ("search_train", "train_ticket_booking")
        examples.append(Example(f"Book a train from {a} to {b}", tools, (tools,)))
        tools = ("weather_query", "send_sms")
        examples.append(Example(f"Text the weather of {a} to my phone", tools, (tools,)))
        tools = ("account_login", "search_train", "train_ticket_booking")
        examples.append(
            Example(
                f"Log in with id 12{len(a)} then book a train from {b} to {a}",
                tools,
                tuple(zip(tools, tools[1:], strict=False)),
            )
        )
    return examples


def test_plan_tools_without_examples_matches_one_tool_per_clause(planner):
    plan = planner.plan_tools("Check the weather in Rome, then send it as an SMS", _train_tools())
    assert plan.nodes == ["weather_query", "send_sms"]
    assert plan.links == [("weather_query", "send_sms")]
    assert plan.planner == "embedded"


def test_plan_tools_learns_implicit_steps_and_order_from_examples(planner):
    tools = _train_tools(_train_examples())
    # "book" alone names one tool; the examples teach that a search comes first
    plan = planner.plan_tools("Please book a train from Turin to Porto", tools)
    assert plan.nodes == ["search_train", "train_ticket_booking"]
    assert plan.links == [("search_train", "train_ticket_booking")]
    plan = planner.plan_tools("Book a train from Porto to Turin after I log in with id 999", tools)
    assert plan.nodes == ["account_login", "search_train", "train_ticket_booking"]


def test_plan_tools_is_deterministic_and_fast(planner):
    tools = _train_tools(_train_examples() * 40)  # a few hundred examples to learn from
    request = "Log in with id 5 and book a train from Oslo to Rome, then text me the weather"
    planner.plan_tools(request, tools)  # learns once per tool set
    start = time.perf_counter()
    plans = [planner.plan_tools(request, tools) for _ in range(20)]
    per_request = (time.perf_counter() - start) / 20
    assert all(p.nodes == plans[0].nodes and p.links == plans[0].links for p in plans)
    assert per_request < 0.25


def test_plan_tools_over_the_zoo_links_by_type(planner, builtin_zoo):
    from orchestrator.planning import ToolSet

    tools = ToolSet.from_zoo(builtin_zoo)
    assert ("automatic-speech-recognition", "summarization") in tools.links
    plan = planner.plan_tools("Transcribe talk.wav and summarize it", tools)
    assert plan.nodes == ["automatic-speech-recognition", "summarization"]
    assert plan.links == [("automatic-speech-recognition", "summarization")]


def test_tool_set_from_taskbench_files(tmp_path):
    import json

    from orchestrator.planning import ToolSet
    from orchestrator.planning.toolset import load_examples

    nodes = [{"id": "a", "desc": "first"}, {"id": "b", "desc": "second"}]
    (tmp_path / "tools.json").write_text(json.dumps({"nodes": nodes}))
    (tmp_path / "graph.json").write_text(json.dumps({"links": [{"source": "a", "target": "b"}]}))
    row = {
        "user_request": "do a then b",
        "task_steps": ["Step 1 Call a to start", "Step 2 Call b to finish"],
        "task_nodes": [{"task": "a"}, {"task": "b"}],
        "task_links": [{"source": "a", "target": "b"}],
    }
    (tmp_path / "dev.jsonl").write_text(json.dumps(row) + "\n")
    tools = ToolSet.from_taskbench(tmp_path / "tools.json", tmp_path / "graph.json")
    assert tools.names() == ["a", "b"] and tools.links == {("a", "b")}
    [example] = load_examples(tmp_path / "dev.jsonl")
    assert example.tools == ("a", "b") and example.steps == ("start", "finish")
    (tmp_path / "broken.jsonl").write_text('{"user_request": "x"}\nnot json\n')
    with pytest.raises(UserError, match="broken.jsonl:2"):
        load_examples(tmp_path / "broken.jsonl")


# -- inputs, capabilities and what is left undone -------------------------------------------------


def test_text_after_a_colon_is_one_input_however_many_sentences(planner, builtin_zoo):
    text = "Bonjour. Je suis content, merci beaucoup."
    plan = planner.plan(f"Tell me the language of this: {text}", builtin_zoo)
    [step] = plan.subtasks
    assert step.cards[0] == "lingua-langid" and step.args["text"].value == text
    assert split_clauses("Is it positive: I came, I saw, I left", colon_text=True) == [
        "Is it positive: I came, I saw, I left"
    ]


def test_words_about_the_input_do_not_pick_the_card(planner, builtin_zoo):
    # "the speaker" is the person in the recording, not a request for speech.
    plan = planner.plan("Transcribe sad.wav and tell me if the speaker sounds upset", builtin_zoo)
    assert [s.cards[0] for s in plan.subtasks] == ["whisper-tiny-en", "vader-sentiment"]
    plan = planner.plan("what's the mood of the text in complaint.png", builtin_zoo)
    assert [s.cards[0] for s in plan.subtasks] == ["rapidocr", "vader-sentiment"]


def test_a_generator_gets_the_text_its_clause_is_about(planner, builtin_zoo):
    plan = planner.plan("write a short reply to the text in note.png", builtin_zoo)
    reading, writing = plan.subtasks
    assert reading.cards[0] == "rapidocr" and reading.args["image"].path == "note.png"
    prompt = writing.args["text"]
    assert prompt.kind == "compose" and prompt.steps == [reading.id]
    assert prompt.prompt == "write a short reply to the text in note.png"
    # A request with nothing to read is the prompt itself.
    [joke] = planner.plan("tell me a joke", builtin_zoo).subtasks
    assert joke.args["text"].value == "tell me a joke"


def test_an_action_on_the_result_no_card_does_is_said_not_dropped(planner, builtin_zoo):
    plan = planner.plan("Transcribe memo.wav and email it to Bob", builtin_zoo)
    assert [s.task for s in plan.subtasks] == ["automatic-speech-recognition"]
    [said] = plan.unserved
    assert said.startswith("“email it to Bob”: no card of the zoo does this")


def test_a_step_may_fall_back_on_a_card_doing_the_same_but_not_on_another_capability(
    planner, builtin_zoo
):
    from orchestrator.cards import ToolCard
    from orchestrator.cards.zoo import Zoo

    twin = ToolCard.model_validate(
        {
            "name": "sentiment-two",
            "task": "text-classification",
            "description": "Tells whether a text sounds positive or negative (sentiment).",
            "inputs": [{"name": "text", "type": "text"}],
            "outputs": [{"name": "label", "type": "text"}],
            "backend": {"kind": "python", "entry": "_e2e_tools:load_broken"},
            "tags": ["sentiment", "positive", "negative"],
            "strength": 1.0,
        }
    )
    zoo = Zoo.from_cards([*(e.card for e in builtin_zoo), twin])
    [step] = planner.plan('is "what a lovely gift" positive or negative?', zoo).subtasks
    assert step.cards == ["sentiment-two", "vader-sentiment"]  # the language identifier is not
    [language] = planner.plan('which language is "hallo Welt"?', zoo).subtasks
    assert language.cards == ["lingua-langid"]  # and no sentiment model falls in for it


def test_a_question_about_an_input_is_answered_in_words_never_by_a_voice(planner, builtin_zoo):
    # What a sign says is its text; what a text file says is not a recording of it.
    [step] = planner.plan("what does sign.png say", builtin_zoo).subtasks
    assert step.cards[0] == "rapidocr"
    plan = planner.plan("is notes.txt happy or sad", builtin_zoo)
    assert [s.task for s in plan.subtasks] == ["text-classification"]
    # Nor is it handed to the general model, which would answer without reading the file.
    for request in (
        "what does notes.txt say",
        "is notes.txt upbeat or gloomy",
        "how many words are in notes.txt",
    ):
        with pytest.raises(NoCapableTool, match="about a text file"):
            planner.plan(request, builtin_zoo)
    # A request (not a question) to say something is still spoken.
    [spoken] = planner.plan('can you say "good night" out loud', builtin_zoo).subtasks
    assert spoken.task == "text-to-speech"


def test_a_question_about_a_given_input_is_asked_of_a_card_reading_that_input(
    planner, builtin_zoo, tmp_path
):
    photo, speech = tmp_path / "cat.png", tmp_path / "memo.wav"
    photo.write_bytes(b"\x89PNG\r\n\x1a\n")
    speech.write_bytes(b"RIFF")
    # The picture's own noun does not make it a text to read: what it shows is asked.
    for request in ("what's in this picture?", "what's this?"):
        [step] = planner.plan(request, builtin_zoo, files=[photo]).subtasks
        assert step.task == "image-classification", request
    # What a recording, or "it" when a recording is all there is, says is its transcript.
    for request in ("what does this recording say", "what does it say"):
        [step] = planner.plan(request, builtin_zoo, files=[speech]).subtasks
        assert step.task == "automatic-speech-recognition", request
    plan = planner.plan("Transcribe memo.wav and tell me what it says", builtin_zoo)
    assert [s.task for s in plan.subtasks] == ["automatic-speech-recognition"]


def test_a_question_about_a_photo_that_no_reader_answers_is_refused(planner, builtin_zoo):
    # Its class or the words read off it would be a wrong answer given as right.
    refusals = {
        "what is the dominant colour in cat.png": "tells what colour something is from a photo",
        "is cat.png blurry": "answers this about an image",
    }
    for request, why in refusals.items():
        with pytest.raises(NoCapableTool, match=why) as refused:
            planner.plan(request, builtin_zoo)
        assert "image-classification" in str(refused.value), request
    # A question in words a reader of images has is still asked of it.
    for request in ("what breed is the cat in cat.png", "what's going on in cat.png"):
        [step] = planner.plan(request, builtin_zoo).subtasks
        assert step.task == "image-classification", request


def test_asking_who_someone_is_or_how_long_a_recording_lasts_is_refused(
    planner, builtin_zoo, tmp_path
):
    # A face count or a summary would be a wrong answer given as right: no card says whose face
    # it is, how old they are or how long a recording lasts (haar-faces says it does not).
    refused = {
        "who is the person in face.png": "tells who someone is from a photo",
        "what's the name of the guy in face.png": "tells who someone is from a photo",
        "how old is the woman in face.png": "tells how old someone is from a photo",
        "how long is memo.wav": "tells how long it lasts from a recording",
        "who is speaking in memo.wav": "tells who someone is from a recording",
        "is the person in face.png smiling": "tells how someone feels from a photo",
        "how many cats are in cat.png": "tells how many cats there are from a photo",
    }
    for request, why in refused.items():
        with pytest.raises(NoCapableTool, match=why) as error:
            planner.plan(request, builtin_zoo)
        assert "object-detection" in str(error.value) or "speech" in str(error.value), request
    # Counting or finding faces is still what the face detector does.
    for request in (
        "how many faces are in face.png",
        "where are the people in face.png",
        "is there anyone in face.png",
    ):
        [step] = planner.plan(request, builtin_zoo).subtasks
        assert step.cards[0] == "haar-faces", request
    # A photo given with the question is what it asks about, named or not.
    with pytest.raises(NoCapableTool, match="what colour something is"):
        planner.plan("what color is the cat", builtin_zoo, files=[tmp_path / "cat.png"])
    # How a recording's speaker feels is asked of its transcript, not refused.
    plan = planner.plan("what's the mood of memo.wav", builtin_zoo)
    assert [s.task for s in plan.subtasks] == [
        "automatic-speech-recognition",
        "text-classification",
    ]


def test_a_lone_verb_reads_what_the_next_clause_names(planner, builtin_zoo):
    # "transcribe and summarize memo.wav": both act on the recording, one after the other.
    plan = planner.plan("transcribe and translate memo.wav", builtin_zoo)
    [step] = plan.subtasks
    assert step.task == "automatic-speech-recognition" and step.args["audio"].path == "memo.wav"
    assert "needs translation" in plan.unserved[0]
    plan = planner.plan("ocr and classify the language of fr.png", builtin_zoo)
    assert [s.task for s in plan.subtasks] == ["image-to-text", "text-classification"]
    assert plan.subtasks[1].deps == [plan.subtasks[0].id]


def test_a_card_claiming_identity_answers_who_someone_is(planner, builtin_zoo):
    # The refusal above comes from what the cards say, not from a fixed list of questions.
    face = builtin_zoo.get("haar-faces").card
    claims = face.model_copy(
        update={
            "name": "face-id",
            "description": "Says who a person in a photo is (face recognition).",
        }
    )
    zoo = Zoo.from_cards([*(e.card for e in builtin_zoo), claims])
    [step] = planner.plan("who is the person in face.png", zoo).subtasks
    assert step.task == "object-detection"


def test_what_an_input_says_in_a_language_is_read_then_translated(planner, builtin_zoo):
    plan = planner.plan("what does fr.png say in english", builtin_zoo)
    # Its words are read (not its class), and the missing translation is named.
    assert [s.task for s in plan.subtasks] == ["image-to-text"]
    assert len(plan.unserved) == 1 and "needs translation" in plan.unserved[0]
    assert "English" in plan.unserved[0]
    # A quoted text's meaning in a language is its translation; without one, a question for
    # the general model, never the embedding model's "meaning" vector.
    with pytest.raises(NoCapableTool, match="needs translation"):
        planner.plan('what does "bonjour mes amis" mean in english', builtin_zoo)
    for request in ('what does "carpe diem" mean', 'what is the meaning of "carpe diem"'):
        [step] = planner.plan(request, builtin_zoo).subtasks
        assert step.task == "text-generation", request


def test_asking_whether_a_text_is_in_a_language_is_language_identification(planner, builtin_zoo):
    plan = planner.plan("grab the words off fr.png and tell me if they're french", builtin_zoo)
    assert [s.task for s in plan.subtasks] == ["image-to-text", "text-classification"]
    assert plan.subtasks[1].cards[0] == "lingua-langid" and not plan.unserved
    [step] = planner.plan('is "bonjour tout le monde" in french or spanish', builtin_zoo).subtasks
    assert step.cards[0] == "lingua-langid"
    # Asking for it in a language is still a translation.
    with pytest.raises(NoCapableTool, match="needs translation"):
        planner.plan("translate the text in fr.png into english", builtin_zoo)


def test_show_me_a_picture_of_something_asks_for_one_to_be_made(planner, builtin_zoo):
    # Not a photo to classify that the user forgot to attach.
    for request in ("show me a picture of a cat", "give me some pictures of red boats"):
        with pytest.raises(NoCapableTool, match="needs text-to-image"):
            planner.plan(request, builtin_zoo)


def test_what_a_clause_asks_for_by_name_or_as_a_kind_decides_the_steps(planner, builtin_zoo):
    # "into text": the transcript is the result, not a voice reading it.
    plan = planner.plan("turn memo.wav into text", builtin_zoo)
    assert [s.task for s in plan.subtasks] == ["automatic-speech-recognition"]
    plan = planner.plan("convert this text to speech: hello there", builtin_zoo)
    assert [s.task for s in plan.subtasks] == ["text-to-speech"]
    # "a transcript of" names the capability; "its language" then reads that transcript.
    plan = planner.plan("I need a transcript of memo.wav, then tell me its language", builtin_zoo)
    transcribe, language = plan.subtasks
    assert (transcribe.task, language.cards[0]) == ("automatic-speech-recognition", "lingua-langid")
    assert language.args["text"].step == transcribe.id
    # "compare the sentiment of" two texts: the sentiment of each, not their embeddings.
    plan = planner.plan('Compare the sentiment of "I love this" and "I hate this"', builtin_zoo)
    assert [s.cards[0] for s in plan.subtasks] == ["vader-sentiment", "vader-sentiment"]
    assert [s.args["text"].value for s in plan.subtasks] == ["I love this", "I hate this"]


def test_a_writing_request_goes_to_the_writer_an_errand_does_not(planner, builtin_zoo):
    # What it is for ("for a bakery") is the subject, not words the writer must have.
    [step] = planner.plan("give me three name ideas for a bakery", builtin_zoo).subtasks
    assert step.task == "text-generation"
    with pytest.raises(NoCapableTool):
        planner.plan("search for flights to Paris", builtin_zoo)


def test_a_bridge_never_makes_what_the_card_after_it_makes(planner, builtin_zoo):
    # Transcribing a photo would mean speaking its label and transcribing that: refused.
    with pytest.raises(NoCapableTool, match="needs audio but was given image"):
        planner.plan("transcribe cat.png", builtin_zoo)
    # Speaking a text only to transcribe it back is one too.
    for request in ("count the words in notes.txt", "transcribe notes.txt"):
        with pytest.raises(NoCapableTool, match="round trip"):
            planner.plan(request, builtin_zoo)
    plan = planner.plan("read sign.png aloud", builtin_zoo)  # a real bridge is still made
    assert [s.task for s in plan.subtasks] == ["image-to-text", "text-to-speech"]


def test_a_slip_of_the_keyboard_in_a_capability_word_is_mended(planner, builtin_zoo):
    [step] = planner.plan('pls tell me the langauge of "ich bin müde"', builtin_zoo).subtasks
    assert step.cards[0] == "lingua-langid" and step.args["text"].value == "ich bin müde"
    [step] = planner.plan("transcirbe memo.wav", builtin_zoo).subtasks
    assert step.task == "automatic-speech-recognition"
    # The quoted text is never mended: it is the input, not an instruction.
    [step] = planner.plan('whats the sentimnet of "langauge"', builtin_zoo).subtasks
    assert step.cards[0] == "vader-sentiment" and step.args["text"].value == "langauge"


def test_a_version_of_an_input_in_another_kind_is_planned_by_types(planner, builtin_zoo):
    # No card's words fit "an audio version", but one reads text and makes audio.
    [step] = planner.plan("can you make an audio version of notes.txt", builtin_zoo).subtasks
    assert step.task == "text-to-speech" and step.args["text"].path == "notes.txt"
    # "a text file of cat.png" is read from the picture, never reached through a voice.
    tasks = [s.task for s in planner.plan("make a text file of cat.png", builtin_zoo).subtasks]
    assert tasks == ["image-to-text"]


def test_an_apostrophe_in_the_instruction_keeps_the_text_after_its_colon_whole(
    planner, builtin_zoo
):
    request = "what's the vibe of this review: the food was cold and the waiter ignored us"
    [step] = planner.plan(request, builtin_zoo).subtasks
    assert step.cards[0] == "vader-sentiment"
    assert step.args["text"].value == "the food was cold and the waiter ignored us"


def test_what_follows_a_second_input_is_asked_of_both(planner, builtin_zoo):
    plan = planner.plan("read sign.png and fr.png aloud", builtin_zoo)
    spoken = [s for s in plan.subtasks if s.task == "text-to-speech"]
    read = {s.id: s.args["image"].path for s in plan.subtasks if s.task == "image-to-text"}
    assert sorted(read.values()) == ["fr.png", "sign.png"]
    assert sorted(read[s.args["text"].step] for s in spoken) == ["fr.png", "sign.png"]


def test_a_card_reading_media_the_request_lacks_does_not_win_a_tie(planner, builtin_zoo):
    # "say" is in the OCR card's words too ("what a sign says"), but no picture was given.
    plan = planner.plan("say hello", builtin_zoo)
    assert plan.subtasks[-1].task == "text-to-speech"
    # Without the file it needs, the only fitting card still says what to attach.
    with pytest.raises(PlanError, match="needs an audio input"):
        planner.plan("transcribe the recording", builtin_zoo)


def test_a_label_is_spoken_only_when_the_clause_asks_for_a_voice(planner, builtin_zoo):
    request = (
        "transcribe memo.wav, figure out if it's positive, tell me its language, "
        "and read the transcript back to me"
    )
    plan = planner.plan(request, builtin_zoo)
    assert [s.task for s in plan.subtasks] == [
        "automatic-speech-recognition",
        "text-classification",
        "text-classification",
        "text-to-speech",
    ]
    transcribe, *_, speak = plan.subtasks
    assert speak.args["text"].step == transcribe.id  # the transcript, not the sentiment label


def test_what_is_written_on_a_picture_is_read_not_told_its_language(planner, builtin_zoo):
    [step] = planner.plan("what is written on fr.png", builtin_zoo).subtasks
    assert step.task == "image-to-text"
    plan = planner.plan("what language is written on fr.png", builtin_zoo)
    assert [s.task for s in plan.subtasks] == ["image-to-text", "text-classification"]


def test_a_question_giving_its_own_text_is_not_asked_of_a_picture(planner, builtin_zoo):
    [step] = planner.plan('describe the mood of "I loved the film"', builtin_zoo).subtasks
    assert step.cards[0] == "vader-sentiment"
    assert step.args["text"].value == "I loved the film"


def test_a_follow_up_asking_what_a_quoted_text_says_in_a_language_translates_it(
    planner, builtin_zoo
):
    # No translation card runs here: the refusal names translation of that text, not a
    # sentiment or language label of it.
    with pytest.raises(NoCapableTool, match="translate to english: bonjour mes amis"):
        planner.plan("what does it say in english: bonjour mes amis", builtin_zoo)


@pytest.mark.parametrize("request_text", ["thanks!", "thank you so much", "hi", "good morning!"])
def test_a_greeting_or_thanks_goes_to_the_chat_model(planner, builtin_zoo, request_text):
    [step] = planner.plan(request_text, builtin_zoo).subtasks
    assert step.task == "text-generation"


@pytest.mark.parametrize(
    "request_text",
    ["turn cat.png into a video", "convert cat.png into a 3d model", "turn it into a poem: rain"],
)
def test_making_an_input_into_a_thing_no_card_makes_is_refused(
    planner, builtin_zoo, request_text
):
    # The voice card's words fit "turn ... into", but it makes speech, not the thing asked for.
    with pytest.raises(NoCapableTool, match="no card of the zoo does what"):
        planner.plan(request_text, builtin_zoo)
    # Into a kind the card makes, it is still the card.
    [step] = planner.plan("turn notes.txt into an audio file", builtin_zoo).subtasks
    assert step.task == "text-to-speech"


def test_chat_shorthand_in_the_instruction_reads_as_the_words_it_stands_for(
    planner, builtin_zoo
):
    for request in ("could u check what's written on sign.png", "can u pls read sign.png"):
        [step] = planner.plan(request, builtin_zoo).subtasks
        assert step.task == "image-to-text", request
    # A quoted text keeps its shorthand: it is what is read, not an instruction.
    [step] = planner.plan('is this positive: "luv u so much"', builtin_zoo).subtasks
    assert step.args["text"].value == "luv u so much"
