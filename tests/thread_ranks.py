"""In-process ranks for the tests of collective code: a rendezvous that one failing rank
breaks for every other rank at once, instead of leaving them to wait out a timeout."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


class Rendezvous:
    """A reusable barrier for ``size`` threads.

    ``fail()`` (a rank's job raised) wakes every rank waiting now and makes every later
    ``wait()`` raise ``threading.BrokenBarrierError``; ranks already released from a round
    finish that round undisturbed. A wait that outlasts ``timeout`` seconds raises too, so
    a test never hangs.
    """

    def __init__(self, size: int, timeout: float = 10.0) -> None:
        self.size, self.timeout = size, timeout
        self._cond = threading.Condition()
        self._arrived = 0
        self._round = 0
        self.failed = False

    def wait(self) -> None:
        with self._cond:
            if self.failed:
                raise threading.BrokenBarrierError("another rank failed")
            mine = self._round
            self._arrived += 1
            if self._arrived == self.size:
                self._arrived = 0
                self._round += 1
                self._cond.notify_all()
                return
            released = self._cond.wait_for(lambda: self._round != mine or self.failed, self.timeout)
            if not released:
                raise threading.BrokenBarrierError(f"no rendezvous within {self.timeout} s")
            if self._round == mine:
                raise threading.BrokenBarrierError("another rank failed")

    def fail(self) -> None:
        with self._cond:
            self.failed = True
            self._cond.notify_all()


class RankGroup:
    """What the threads of one in-process job share: a rendezvous and one slot per rank."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.barrier = Rendezvous(size)
        self.slots: list[Any] = [None] * size

    def gather(self, rank: int, value: Any) -> list[Any]:
        """Every rank's ``value``, in rank order, on every rank."""
        self.slots[rank] = value
        self.barrier.wait()
        out = list(self.slots)
        self.barrier.wait()  # nobody overwrites a slot before every rank has read them
        return out


def run_ranks(
    comms: list[Any], job: Callable[[Any], Any], rendezvous: Rendezvous
) -> tuple[list[Any], list[BaseException | None]]:
    """``job(comm)`` for every communicator at once, one thread each; each rank's result and
    exception (None where it returned). A rank that raises breaks ``rendezvous`` for the rest."""
    size = len(comms)
    results: list[Any] = [None] * size
    errors: list[BaseException | None] = [None] * size

    def work(rank: int) -> None:
        try:
            results[rank] = job(comms[rank])
        except BaseException as exc:  # handed back to the test
            errors[rank] = exc
            rendezvous.fail()

    threads = [threading.Thread(target=work, args=(r,)) for r in range(size)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(4 * rendezvous.timeout)
    return results, errors
