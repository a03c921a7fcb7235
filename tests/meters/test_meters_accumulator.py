"""The GPU energy accumulator (ecnas.meters.accumulator): counter differences with wraps and
resets, and trapezoid integration of polled power, apart from any device."""

from __future__ import annotations

import pytest

from ecnas.meters.accumulator import CounterTotal, PowerIntegral


def test_counter_first_read_is_the_base_then_differences_add() -> None:
    c = CounterTotal(1000.0, unit="mJ")
    assert c.update(5_000, 1.0) == "" and c.energy_j == 0.0
    assert c.update(7_500, 2.0) == "" and c.energy_j == 2.5
    assert c.update(7_500, 3.0) == "" and c.energy_j == 2.5  # a counter standing still
    assert c.update(10_000, 4.0) == "" and c.energy_j == 5.0
    assert isinstance(c.counts, int)  # integer reads stay exact


def test_counter_reset_counts_on_from_zero_and_says_so() -> None:
    c = CounterTotal(1000.0, unit="mJ")
    c.update(1_000, 1.0)
    c.update(9_000, 2.0)  # 8 J
    note = c.update(1_000, 3.0)  # driver reloaded: 1 J since the reload
    assert note == "energy counter went back (9000 -> 1000 mJ); counting on from 0"
    assert c.energy_j == 9.0
    assert c.update(3_000, 4.0) == "" and c.energy_j == 11.0


def test_counter_without_wrap_width_treats_every_decrease_as_a_reset() -> None:
    c = CounterTotal(1000.0)
    c.update(2**32 - 10, 1.0)
    assert c.update(5, 1.001) == "energy counter went back (4294967286 -> 5); counting on from 0"
    assert c.energy_j == 0.005


def test_counter_wrap_of_32_bits_when_the_power_it_implies_is_plausible() -> None:
    # 15.3 µJ counts, as an MI300X reports them
    res_uj = 15.3
    c = CounterTotal(1e6 / res_uj, wrap_bits=32, max_plausible_w=3000.0)
    c.update(2**32 - 1_000, 0.0)
    assert c.update(500, 5.0) == ""  # 1,500 counts over 5 s: a wrap
    assert c.counts == 1_500
    assert c.energy_j == pytest.approx(1_500 * res_uj * 1e-6, rel=1e-12)


def test_counter_decrease_too_large_for_a_wrap_is_a_reset() -> None:
    res_uj = 15.3
    c = CounterTotal(1e6 / res_uj, wrap_bits=32, max_plausible_w=3000.0)
    c.update(3_000_000_000, 0.0)
    c.update(3_000_001_000, 1.0)
    # a wrap would mean ~1.3e9 counts (20 kJ) in 10 ms: 2 MW, implausible
    note = c.update(100, 1.01)
    assert note.startswith("energy counter went back (3000001000 -> 100)")
    assert c.counts == 1_100
    # the same decrease over an hour is a plausible wrap (~5.6 W)
    c2 = CounterTotal(1e6 / res_uj, wrap_bits=32, max_plausible_w=3000.0)
    c2.update(3_000_000_000, 0.0)
    assert c2.update(100, 3600.0) == "" and c2.counts == 2**32 - 3_000_000_000 + 100


def test_power_trapezoid_integration() -> None:
    p = PowerIntegral()
    assert p.update(100.0, 1.0) == "" and p.energy_j == 0.0  # one read: nothing integrated
    p.update(200.0, 3.0)  # 2 s at a mean of 150 W
    assert p.energy_j == pytest.approx(300.0)
    p.update(200.0, 3.5)
    assert p.energy_j == pytest.approx(400.0)
    p.update(0.0, 4.5)
    assert p.energy_j == pytest.approx(500.0)
    assert p.last_w == 0.0 and p.last_t == 4.5
