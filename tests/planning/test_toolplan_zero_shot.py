"""Zero-shot tool planning (orchestrator.planning.graph_path) on tiny tool sets the tests write.

No embedder (TF-IDF only), so each rule is checked on plans a reader can work out by hand; each
test also switches its rule off and checks the plan (or the match) changes, so it tests the rule.
"""

from __future__ import annotations

import re

import orchestrator.planning.graph_path as graphplan
from orchestrator.planning.graph_path import GraphPathPlanner
from orchestrator.planning.toolset import ToolSet, ToolSpec


def _tools(descriptions: dict[str, str], links: list[tuple[str, str]] | None = None) -> ToolSet:
    names = list(descriptions)
    if links is None:  # every tool may follow every other
        links = [(a, b) for a in names for b in names if a != b]
    return ToolSet([ToolSpec(n, d) for n, d in descriptions.items()], set(links))


HOTEL = _tools(
    {
        "hotel_booking": "Book a hotel room",
        "hotel_booking_query": "Query a hotel room booking",
        "weather_query": "Query the weather forecast of a city",
    },
    [("hotel_booking", "hotel_booking_query"), ("hotel_booking_query", "hotel_booking")],
)


def test_a_lookup_goes_before_the_tool_acting_on_the_same_clause(monkeypatch):
    # Both hotel tools match only "Book a hotel room": the request gives no order, so the one
    # whose name says it looks something up comes first (it feeds the booking).
    request = "Book a hotel room for me, in Paris"
    plan = GraphPathPlanner(HOTEL).plan(request)
    assert plan.nodes == ["hotel_booking_query", "hotel_booking"]
    assert plan.links == [("hotel_booking_query", "hotel_booking")]
    monkeypatch.setattr(graphplan, "_LOOKUP_FIRST", 0.0)
    assert GraphPathPlanner(HOTEL).plan(request).nodes == ["hotel_booking", "hotel_booking_query"]


def test_clause_order_still_wins_over_the_lookup_rule():
    # The query is asked for after the booking in the request: it follows the booking.
    plan = GraphPathPlanner(HOTEL).plan("Book a hotel room, then query the hotel room booking")
    assert plan.nodes == ["hotel_booking", "hotel_booking_query"]


REPAIR = _tools(
    {
        "appliance_repair_request": "Request an appliance repair visit",
        "appliance_repair_cancellation": "Cancel an appliance repair visit",
        "appliance_repair_rescheduling": "Reschedule an appliance repair visit",
        "appliance_repair_status_query": "Query the status of an appliance repair visit",
        "send_sms": "Send an SMS text message to a phone",
    }
)


def test_a_tool_no_better_than_its_look_alikes_does_not_enter(monkeypatch):
    # "appliance repair visit 12" fits the whole repair family alike: no member is added for it
    # on that fit alone (without the family margin, rescheduling is).
    request = (
        "Please cancel the appliance repair visit, appliance repair visit 12 for the washer, "
        "then send an SMS to my phone"
    )
    plan = GraphPathPlanner(REPAIR).plan(request)
    assert plan.nodes[0] == "appliance_repair_cancellation" and plan.nodes[-1] == "send_sms"
    assert "appliance_repair_rescheduling" not in plan.nodes
    monkeypatch.setattr(graphplan, "_DISTINCT", 0.0)
    assert "appliance_repair_rescheduling" in GraphPathPlanner(REPAIR).plan(request).nodes


def test_each_tool_has_its_nearest_look_alikes_as_family():
    planner = GraphPathPlanner(REPAIR)
    family = {
        planner.names[i]: {planner.names[j] for j in row} for i, row in enumerate(planner.family)
    }
    assert len(family["send_sms"]) == 3 and "send_sms" not in family["send_sms"]
    assert family["appliance_repair_request"] <= set(planner.names) - {"send_sms"} - {
        "appliance_repair_request"
    }
    one = GraphPathPlanner(_tools({"only": "The only tool"}))
    assert one.family.shape == (1, 0)  # no look-alikes: the margin is left out
    assert one.plan("Use the only tool").nodes == ["only"]


def test_a_fragment_is_read_in_the_request_s_topic(monkeypatch):
    # On its own "the date is May 1" fits the weather tool a little better (both documents say
    # "for a date"); the request is about a hotel, so in it the fragment leans to the hotel tool.
    tools = _tools(
        {
            "hotel_booking": "Hotel room booking for a date",
            "weather_query": "Weather city forecast for a date",
        }
    )
    request = "Book a hotel room, the date is May 1"
    clauses = ["Book a hotel room", "the date is May 1"]
    fragment = GraphPathPlanner(tools).matches(clauses, request)[1]
    assert fragment[0] > fragment[1]
    monkeypatch.setattr(graphplan, "_CONTEXT", 0.0)
    fragment = GraphPathPlanner(tools).matches(clauses, request)[1]
    assert fragment[0] < fragment[1]


FILES = _tools(
    {
        "file_write": "Write content to a file",
        "file_modify": "Modify the content of an existing file",
        "file_delete": "Delete a file. After file_write or file_modify, delete it if unneeded",
    }
)


def test_a_tool_whose_description_names_another_comes_after_it(monkeypatch):
    # The delete tool's description names file_modify as done before it: though the request
    # says "delete" first, the delete tool cannot feed the modifying one.
    request = "Delete the file, after I modify the file content"
    plan = GraphPathPlanner(FILES).plan(request)
    assert plan.nodes == ["file_modify", "file_delete"]
    assert plan.links == [("file_modify", "file_delete")]
    monkeypatch.setattr(graphplan, "_TOOL_NAME", re.compile(r"(?!)"))  # no tool is named
    assert GraphPathPlanner(FILES).plan(request).nodes == ["file_delete", "file_modify"]


def test_only_identifiers_in_a_description_count_as_tool_names():
    # "search" in prose is a plain word, not the one-word tool of that name.
    tools = _tools({"search": "Search the web", "summarize": "Summarize what a search found"})
    planner = GraphPathPlanner(tools)
    assert planner.successors == [[1], [0]]
    assert graphplan._TOOL_NAME.findall("after file_write or search, 2_b x") == ["file_write"]
