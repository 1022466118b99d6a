"""The generation clock reads the database on its first use whatever the machine's uptime.

``time.monotonic()`` counts from boot. These tests inject a clock that starts
at zero, as on a container started a moment ago, so they fail on any machine
if "never read" is confused with "read at time 0".
"""

from __future__ import annotations

import pytest

from core.invalidation import KEYS, POLICY, _GenerationClock, generation_bump

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


class SteppedClock:
    """A monotonic clock that only moves when the test says so."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def test_first_read_happens_at_zero_uptime(settings, django_assert_num_queries):
    settings.INVALIDATION_CHECK_SECONDS = 3600
    generation_bump(kind=KEYS)
    generation_clock = _GenerationClock(monotonic=SteppedClock(0.0))
    with django_assert_num_queries(1):
        assert generation_clock.values()[KEYS] == 1


def test_values_are_cached_within_the_interval_and_reread_after_it(settings, django_assert_num_queries):
    settings.INVALIDATION_CHECK_SECONDS = 10
    time_source = SteppedClock(0.0)
    generation_clock = _GenerationClock(monotonic=time_source)
    generation_bump(kind=POLICY)
    assert generation_clock.values()[POLICY] == 1
    generation_bump(kind=POLICY)
    time_source.now = 9.999
    with django_assert_num_queries(0):
        assert generation_clock.values()[POLICY] == 1
    time_source.now = 10.0
    with django_assert_num_queries(1):
        assert generation_clock.values()[POLICY] == 2


def test_reset_forces_a_read_at_zero_uptime(settings, django_assert_num_queries):
    """The revocation path: a local write resets the clock, and the next read must hit the database."""
    settings.INVALIDATION_CHECK_SECONDS = 3600
    generation_clock = _GenerationClock(monotonic=SteppedClock(0.0))
    generation_clock.values()
    generation_bump(kind=KEYS)
    generation_clock.reset()
    with django_assert_num_queries(1):
        assert generation_clock.values()[KEYS] == 1
