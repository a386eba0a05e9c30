"""Fleet mode's requests on their own: the deadline queue, on a bare SimPy clock."""

from __future__ import annotations

import random

import pytest

simpy = pytest.importorskip("simpy")

from simulations._fleet_request import Deadlines  # noqa: E402


class _Request:
    def __init__(self, deadline_s: float) -> None:
        self.deadline_s = deadline_s


class _Flight:
    """What a deadline queue sees of a request: its deadline, whether it was answered, and its fallback."""

    def __init__(self, env: simpy.Environment, name: str, deadline_s: float, passed: list[tuple[float, str]]) -> None:
        self.env, self.name, self.passed = env, name, passed
        self.request = _Request(deadline_s)
        self.due_s = env.now + (deadline_s - env.now)
        self.answered = False

    def deadline_passed(self) -> None:
        self.passed.append((self.env.now, self.name))


def _send(deadlines: Deadlines, flight: _Flight) -> None:
    deadlines.add(flight)  # type: ignore[arg-type]  # duck-typed: what the queue reads of a Flight


def test_each_unanswered_request_passes_its_deadline_at_it_and_answered_ones_never() -> None:
    env = simpy.Environment()
    deadlines = Deadlines(env)
    passed: list[tuple[float, str]] = []
    flights = {name: _Flight(env, name, due, passed) for name, due in (("a", 1.0), ("b", 1.0), ("c", 2.5), ("d", 3.0))}
    for flight in flights.values():
        _send(deadlines, flight)
    env.timeout(0.5).callbacks.append(lambda _: setattr(flights["a"], "answered", True))  # in time
    env.timeout(3.5).callbacks.append(lambda _: setattr(flights["d"], "answered", True))  # too late
    env.run()
    assert passed == [(1.0, "b"), (2.5, "c"), (3.0, "d")]


def test_deadlines_pass_at_the_float_a_timer_of_their_own_would_have_fired() -> None:
    # A request's own timer, set when it was sent, fired at now + (deadline - now); the queue's one timer,
    # set later from another time, must fire at the same floats, in the same order.
    draws = random.Random(7)
    env = simpy.Environment()
    deadlines = Deadlines(env)
    own: list[tuple[float, str]] = []
    passed: list[tuple[float, str]] = []

    def send(name: str) -> None:
        flight = _Flight(env, name, env.now + 5.0, passed)
        _send(deadlines, flight)
        if draws.random() < 0.9:  # most are answered in time
            env.timeout(draws.uniform(0, 4.9)).callbacks.append(lambda _: setattr(flight, "answered", True))

        def timed_out(_: simpy.Event) -> None:
            if not flight.answered:
                own.append((env.now, name))

        env.timeout(flight.request.deadline_s - env.now).callbacks.append(timed_out)

    at_s = 0.0
    for index in range(3000):
        at_s += draws.expovariate(200.0)
        env.timeout(at_s).callbacks.append(lambda _, name=f"r{index}": send(name))
    env.run()
    assert len(passed) > 200
    assert passed == own
