"""Lost hosts: since when each is gone, and when a run gives up waiting for them."""

from __future__ import annotations

from flowbatch.run.hosts import LostHosts, duration


def test_the_timeout_counts_from_the_host_lost_last() -> None:
    lost = LostHosts(timeout=60)
    lost.lose("remote", "h1", now=100)
    lost.lose("remote", "h1", now=150)  # still the same loss: it counts from 100
    assert not lost.given_up(now=159)
    lost.lose("gpu", "g1", now=130)
    assert not lost.given_up(now=189)
    assert lost.given_up(now=190)
    assert list(lost) == [("gpu", "g1"), ("remote", "h1")]
    assert lost.reason() == "Host lost: no host came back within 1m (g1 of `gpu`, h1 of `remote`)"


def test_a_host_back_is_no_longer_waited_for() -> None:
    lost = LostHosts(timeout=0)
    lost.lose("remote", "h1", now=5)
    lost.back("remote", "h1")
    assert not lost and not lost.given_up(now=10**6)


def test_without_a_timeout_a_run_waits_for_ever() -> None:
    lost = LostHosts(timeout=None)
    lost.lose("remote", "h1", now=0)
    assert lost and not lost.given_up(now=10**9)


def test_durations_are_written_as_the_option_takes_them() -> None:
    assert [duration(s) for s in (600, 90, 60, 2.5, 0)] == ["10m", "90s", "1m", "2.5s", "0s"]
