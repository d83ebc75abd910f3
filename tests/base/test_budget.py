import subprocess
import sys
import threading
from decimal import Decimal

import pytest

from orchestrator.budget import Budget, Cost, Ledger, raise_hint
from orchestrator.errors import BudgetExceeded, InvalidBudget, UserError


def test_reserve_then_settle_counts_the_real_cost():
    ledger = Ledger(Budget(usd=Decimal("1.00"), calls=5))
    held = ledger.reserve(Cost(usd=Decimal("0.40"), calls=1))
    assert ledger.left()["usd"] == "0.60"
    ledger.settle(held, Cost(usd=Decimal("0.25"), calls=1))
    assert ledger.spent.usd == Decimal("0.25")
    assert ledger.left()["calls"] == 4


def test_a_call_that_cannot_fit_is_refused_and_names_the_limit():
    ledger = Ledger(Budget(usd=Decimal("0.10")))
    ledger.reserve(Cost(usd=Decimal("0.08"), calls=1))
    with pytest.raises(BudgetExceeded) as info:
        ledger.reserve(Cost(usd=Decimal("0.05"), calls=1))
    assert info.value.limit == "usd"


def test_released_reservation_frees_the_budget():
    ledger = Ledger(Budget(calls=1))
    held = ledger.reserve(Cost(calls=1))
    with pytest.raises(BudgetExceeded):
        ledger.reserve(Cost(calls=1))
    ledger.release(held)
    ledger.reserve(Cost(calls=1))


def test_concurrent_reservations_never_overspend():
    ledger = Ledger(Budget(usd=Decimal("1.0")))
    granted = []

    def grab():
        for _ in range(50):
            try:
                held = ledger.reserve(Cost(usd=Decimal("0.03"), calls=1))
            except BudgetExceeded:
                return
            granted.append(held)
            ledger.settle(held, held.cost)

    threads = [threading.Thread(target=grab) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(granted) == 33
    assert ledger.spent.usd <= Decimal("1.0")


def test_negative_limits_are_refused():
    with pytest.raises(ValueError):
        Budget(calls=-1)


def test_a_hold_grows_with_headroom_but_never_past_what_is_left():
    ledger = Ledger(Budget(usd=Decimal("1.00"), seconds=100, tokens=1000))
    held = ledger.reserve(Cost(usd=Decimal("0.30"), seconds=10, tokens=300, calls=1), headroom=4)
    assert held.cost.usd == Decimal("0.30")  # the expectation is kept apart from the hold
    assert held.cap.usd == Decimal("1.00") and held.cap.tokens == 1000
    assert 39.9 < held.cap.seconds <= 40
    # what the first call holds is not available to a second one
    with pytest.raises(BudgetExceeded):
        ledger.reserve(Cost(usd=Decimal("0.01"), calls=1))
    ledger.settle(held, Cost(usd=Decimal("0.25"), seconds=3, tokens=200, calls=1))
    second = ledger.reserve(Cost(usd=Decimal("0.30"), calls=1), headroom=4)
    assert second.cap.usd == Decimal("0.75")


def test_without_limits_a_hold_is_the_expected_cost_times_headroom():
    ledger = Ledger(Budget())
    held = ledger.reserve(Cost(usd=Decimal("0.01"), seconds=1, calls=1), headroom=2)
    assert held.cap.usd == Decimal("0.02") and held.cap.seconds == 2


def test_a_resumed_ledger_carries_money_tokens_calls_and_wall_seconds():
    now = [50.0]
    first = Ledger(Budget(usd=Decimal("0.10"), seconds=10, calls=3), clock=lambda: now[0])
    held = first.reserve(Cost(usd=Decimal("0.04"), calls=1))
    now[0] += 4.0
    first.settle(held, Cost(usd=Decimal("0.04"), seconds=4.0, tokens=7, calls=1))
    snapshot = first.snapshot()
    assert snapshot["wall_seconds"] == 4.0

    later = [1000.0]  # a new process: a different clock origin
    resumed = Ledger.resumed(first.budget, snapshot, clock=lambda: later[0])
    assert resumed.spent.usd == Decimal("0.04") and resumed.spent.calls == 1
    assert resumed.spent.tokens == 7 and resumed.elapsed() == 4.0
    later[0] += 5.0
    assert resumed.left()["seconds"] == 1.0 and resumed.left()["calls"] == 2
    with pytest.raises(BudgetExceeded) as info:
        resumed.reserve(Cost(seconds=2.0, calls=1))
    assert info.value.limit == "seconds"


@pytest.mark.parametrize(
    ("limits", "name"),
    [
        ({"usd": "nan"}, "usd"),
        ({"usd": Decimal("NaN")}, "usd"),
        ({"usd": "inf"}, "usd"),
        ({"usd": "abc"}, "usd"),
        ({"usd": -0.01}, "usd"),
        ({"usd": [1]}, "usd"),
        ({"seconds": float("nan")}, "seconds"),
        ({"seconds": float("inf")}, "seconds"),
        ({"seconds": "60"}, "seconds"),
        ({"seconds": -1}, "seconds"),
        ({"calls": "3"}, "calls"),
        ({"calls": 2.5}, "calls"),
        ({"calls": True}, "calls"),
        ({"tokens": -5}, "tokens"),
    ],
)
def test_a_bad_limit_is_a_user_error_naming_it(limits, name):
    with pytest.raises(InvalidBudget) as info:
        Budget(**limits)
    assert isinstance(info.value, UserError)
    message = str(info.value)
    assert f"'{name}'" in message and "set it with --" in message and f"Budget({name}=" in message


def test_good_limits_are_normalised():
    budget = Budget(usd="0.05", seconds=3, tokens=10, calls=0)
    assert budget.usd == Decimal("0.05") and budget.seconds == 3.0
    assert isinstance(budget.seconds, float) and budget.calls == 0
    assert Budget(usd=1).usd == Decimal(1) and Budget(usd=0.1).usd == Decimal("0.1")


def test_a_refusal_shows_amounts_that_differ():
    ledger = Ledger(Budget(usd=Decimal("0.00001")))
    with pytest.raises(BudgetExceeded) as info:
        ledger.reserve(Cost(usd=Decimal("0.0000100004"), calls=1))
    assert "needs $0.0000100004, $0.0000100000 left" in str(info.value)
    now = [0.0]
    timed = Ledger(Budget(seconds=2.0), clock=lambda: now[0])
    now[0] = 0.1
    with pytest.raises(BudgetExceeded) as info:
        timed.reserve(Cost(seconds=1.91, calls=1))
    assert "needs 1.91 s, 1.90 s left" in str(info.value)
    assert raise_hint("seconds") == "raise --max-seconds or Budget(seconds=...)"


def test_the_calls_of_one_round_share_what_the_round_started_with():
    ledger = Ledger(Budget(usd=Decimal("1.00"), seconds=60, tokens=1000))
    expected = Cost(usd=Decimal("0.01"), seconds=0.5, tokens=50, calls=1)
    first = ledger.reserve(expected, headroom=4, round_key=7, peers=3)
    second = ledger.reserve(expected, headroom=4, round_key=7, peers=3)
    third = ledger.reserve(expected, headroom=4, round_key=7, peers=3)
    for held in (first, second, third):
        # far more than 4x the expected cost: a third of what the round started with
        assert held.cap.usd == Decimal("1.00") / 3
        assert 19.9 < held.cap.seconds <= 20 and held.cap.tokens == 333
    # together they hold no more than was left
    total = ledger.held()
    assert total.usd <= Decimal("1.00") and total.seconds <= 60 and total.tokens <= 1000
    for held in (first, second, third):
        ledger.settle(held, expected)
    # a lone call in the next round may hold everything left
    alone = ledger.reserve(expected, headroom=4, round_key=8, peers=1)
    assert alone.cap.usd == Decimal("0.97") and alone.cap.tokens == 850


def test_a_round_share_never_starves_a_call_that_needs_more():
    ledger = Ledger(Budget(usd=Decimal("1.00")))
    big = ledger.reserve(Cost(usd=Decimal("0.30"), calls=1), headroom=4, round_key=1, peers=2)
    assert big.cap.usd == Decimal("1.00")  # 4 x 0.30 clipped to what is left
    with pytest.raises(BudgetExceeded):
        ledger.reserve(Cost(usd=Decimal("0.01"), calls=1), headroom=4, round_key=1, peers=2)
    # a call that uses no money holds none, whatever its share
    free = Ledger(Budget(usd=Decimal("1.00")))
    held = free.reserve(Cost(seconds=1, calls=1), headroom=4, round_key=1, peers=1)
    assert held.cap.usd == 0


@pytest.mark.parametrize(
    ("option", "value"), [("--budget-usd", "nan"), ("--max-seconds", "nan"), ("--budget-usd", "-1")]
)
def test_the_cli_refuses_a_bad_limit_with_exit_code_2(tmp_path, option, value):
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator", "run", "Say 'hi' aloud", option, value],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert option in " ".join(done.stderr.split())  # the message names the option to fix


def test_money_is_written_in_plain_digits():
    from orchestrator.budget import usd_text

    assert Cost(Decimal("1.551E-8")).as_dict()["usd"] == "0.00000001551"
    assert Budget(usd=Decimal("1E-7")).as_dict()["usd"] == "0.0000001"
    assert usd_text(Decimal("0.05")) == "0.05"
