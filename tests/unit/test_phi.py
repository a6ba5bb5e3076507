"""The phi-accrual detector's maths (cms/nodes/phi.py): pure, so tested on its own."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from cms.nodes.phi import PhiAccrual, phi

THRESHOLD = 8.0


def normal_tail(elapsed: float, mean: float, std: float) -> float:
    """The exact -log10 P(X >= elapsed) for a normal distribution."""
    return -math.log10(0.5 * math.erfc((elapsed - mean) / (std * math.sqrt(2))))


@pytest.mark.parametrize("elapsed", [0.5, 0.75, 0.8, 0.9, 1.0])
def test_phi_follows_the_normal_tail(elapsed):
    # within 2.5 deviations the logistic approximation is within a few hundredths
    assert phi(elapsed, 0.75, 0.1) == pytest.approx(normal_tail(elapsed, 0.75, 0.1), abs=0.05)


@pytest.mark.parametrize("elapsed", [1.1, 1.2])
def test_far_in_the_tail_phi_errs_towards_suspicion_by_little(elapsed):
    exact = normal_tail(elapsed, 0.75, 0.1)
    assert exact <= phi(elapsed, 0.75, 0.1) <= exact * 1.15


def test_phi_at_the_mean_is_log10_of_two_and_grows_with_silence():
    assert phi(0.75, 0.75, 0.1) == pytest.approx(math.log10(2))
    values = [phi(0.75 + i * 0.05, 0.75, 0.1) for i in range(-20, 200)]
    assert all(b > a for a, b in itertools.pairwise(values))


def test_phi_far_in_the_tail_is_finite_and_far_before_it_near_zero():
    assert math.isfinite(phi(10_000.0, 0.25, 0.01)) and phi(10_000.0, 0.25, 0.01) > 1e6
    assert 0 <= phi(0.0, 10.0, 0.1) < 1e-12


def test_a_wider_distribution_suspects_later():
    assert phi(1.2, 0.75, 0.2) < phi(1.2, 0.75, 0.1)


def steady(detector: PhiAccrual, gaps: list[float], start: float = 0.0) -> float:
    now = start
    for gap in gaps:
        now += gap
        detector.heartbeat(now)
    return now


def test_nothing_arrived_yet_means_no_suspicion():
    detector = PhiAccrual(0.25)
    assert detector.phi(1000.0) == 0.0 and detector.silent_for(1000.0) == 0.0


def test_mean_and_std_of_the_window():
    detector = PhiAccrual(0.25, window=4)
    now = steady(detector, [0.1, 0.2, 0.3, 0.4, 0.5])  # the first arrival has no gap
    assert detector.mean == pytest.approx(0.35)  # the four newest gaps (0.2 .. 0.5)
    assert detector.std == pytest.approx(math.sqrt(0.0125))
    assert detector.silent_for(now + 1) == pytest.approx(1)


def test_the_first_estimate_is_the_expected_interval():
    detector = PhiAccrual(0.25)
    assert detector.mean == pytest.approx(0.25)
    assert detector.std == pytest.approx(0.0625)


def test_min_std_and_acceptable_pause_are_applied():
    detector = PhiAccrual(0.25, min_std=0.1, acceptable_pause=0.5)
    now = steady(detector, [0.25] * 300)
    assert detector.std < 0.01
    assert detector.phi(now + 1.0) == pytest.approx(phi(1.0, detector.mean + 0.5, 0.1))


def test_the_defaults_declare_a_silent_node_in_about_a_second_and_a_half():
    detector = PhiAccrual(0.25, min_std=0.1, acceptable_pause=0.5)
    now = steady(detector, [0.25] * 300)
    assert detector.phi(now + 1.0) < THRESHOLD  # a 1 s silence: not yet
    assert detector.phi(now + 1.4) > THRESHOLD  # 1.4 s: suspected


def test_latency_spikes_and_retransmissions_do_not_reach_the_threshold():
    """300 ms random latency spikes and 2 % loss (retransmits of 200-400 ms, twice in a
    row 600 ms) for ten simulated minutes: phi at each arrival stays under the
    threshold."""
    rng = random.Random(16)
    detector = PhiAccrual(0.25, min_std=0.1, acceptable_pause=0.5)
    now, worst = 0.0, 0.0
    for _ in range(4 * 600):
        gap = 0.25
        if rng.random() < 0.02:
            gap += rng.choice([0.2, 0.4, 0.6])
        if rng.random() < 0.05:
            gap += rng.uniform(0, 0.3)
        now += gap
        worst = max(worst, detector.phi(now))
        detector.heartbeat(now)
    assert worst < THRESHOLD / 2


def test_a_restart_counts_silence_from_the_new_connection():
    detector = PhiAccrual(0.25)
    now = steady(detector, [0.25] * 20)
    assert detector.phi(now + 5) > THRESHOLD
    detector.restart(now + 5)
    assert detector.phi(now + 5.1) < 1


@pytest.mark.parametrize(
    "kwargs", [{"expected_interval": 0}, {"min_std": 0}, {"acceptable_pause": -1}, {"window": 1}]
)
def test_nonsense_parameters_are_refused(kwargs):
    args = {"expected_interval": 0.25, **kwargs}
    with pytest.raises(ValueError):
        PhiAccrual(**args)
