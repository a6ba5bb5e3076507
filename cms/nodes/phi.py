"""The phi-accrual failure detector (Hayashibara et al., 2004; as in Akka and Cassandra).

Instead of "dead after N missed heartbeats", phi says how unlikely the present silence
is, given the gaps seen so far: phi = -log10(P(a gap at least this long)), the gaps
modelled as a normal distribution of the window's mean and standard deviation. A
phi of 8 means a silence that a node with this history would show once in 10^8
heartbeats. A jittery link widens the distribution, so a silence has to last longer
before it counts; a steady one lets it count sooner.

Two guards keep a calm history from making the detector jumpy: the standard deviation
never falls below ``min_std``, and an ``acceptable_pause`` is added to the mean (a
pause that long is not suspicious at all: a retransmitted segment, a busy loop).

The defaults (cms/settings.py, ``CMS_WATCH_*``) with a heartbeat every 0.25 s:
threshold 8, minimum deviation 0.1 s, acceptable pause 0.5 s. On a steady link the
mean gap is 0.25 s, so phi reaches 8 when the silence reaches about
0.25 + 0.5 + 5.3 x 0.1 = 1.28 s: a dead-silent node is suspected within ~1.3-1.4 s of
its last heartbeat (the checker looks every 0.1 s). A 300 ms latency spike makes a
gap of ~0.55 s (phi ≈ 0), a TCP retransmission after a lost segment (200-400 ms,
twice in a row 600 ms) a gap of at most ~0.85 s (phi ≈ 1); neither comes near 8. A
1 s stall makes a gap of ~1.25 s (phi ≈ 7.3 on a steady link): not suspected either,
though a stall a little longer may be, which the second opinion before a failover
is there to catch. The detector is pure (no clock of its own) so that its maths is
tested on its own.
"""

from __future__ import annotations

import math
from collections import deque


def phi(elapsed: float, mean: float, std: float) -> float:
    """-log10 of the probability that a gap is at least ``elapsed``, for a normal
    distribution of ``mean`` and ``std``; Akka's logistic approximation of the normal
    CDF (error under 0.0002): P = 1 / (1 + exp(a)), a = y (1.5976 + 0.070566 y²),
    y = (elapsed - mean) / std. Written as a softplus, so that a silence far in the
    tail gives a large finite phi instead of log10(0)."""
    y = (elapsed - mean) / std
    a = y * (1.5976 + 0.070566 * y * y)
    return (max(a, 0.0) + math.log1p(math.exp(-abs(a)))) / math.log(10)


class PhiAccrual:
    """One stream's detector: feed it arrival times, ask it for phi at a time."""

    def __init__(
        self,
        expected_interval: float,
        *,
        window: int = 200,
        min_std: float = 0.1,
        acceptable_pause: float = 0.5,
    ) -> None:
        if expected_interval <= 0 or min_std <= 0 or acceptable_pause < 0 or window < 2:
            raise ValueError("interval and min_std must be > 0, pause >= 0, window >= 2")
        self.min_std = min_std
        self.acceptable_pause = acceptable_pause
        self._gaps: deque[float] = deque(maxlen=window)
        self._sum = 0.0
        self._squares = 0.0
        # Before any gap is seen, assume the expected interval with a quarter of it as
        # deviation (Akka's first-heartbeat estimate): two samples around it.
        for gap in (expected_interval * 0.75, expected_interval * 1.25):
            self._add(gap)
        self.last: float | None = None

    def _add(self, gap: float) -> None:
        if len(self._gaps) == self._gaps.maxlen:
            old = self._gaps[0]
            self._sum -= old
            self._squares -= old * old
        self._gaps.append(gap)
        self._sum += gap
        self._squares += gap * gap

    def heartbeat(self, now: float) -> None:
        """Something arrived at ``now`` (monotonic seconds)."""
        if self.last is not None and now >= self.last:
            self._add(now - self.last)
        self.last = now

    def restart(self, now: float) -> None:
        """A new connection: silence counts from ``now``; the gaps seen are kept."""
        self.last = now

    @property
    def mean(self) -> float:
        return self._sum / len(self._gaps)

    @property
    def std(self) -> float:
        variance = self._squares / len(self._gaps) - self.mean**2
        return math.sqrt(max(variance, 0.0))

    def phi(self, now: float) -> float:
        """How suspicious the silence since the last arrival is at ``now``; 0 before the
        first arrival."""
        if self.last is None:
            return 0.0
        return phi(
            now - self.last,
            self.mean + self.acceptable_pause,
            max(self.std, self.min_std),
        )

    def silent_for(self, now: float) -> float:
        return 0.0 if self.last is None else now - self.last
