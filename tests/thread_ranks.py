"""In-process ranks for the tests of collective code: a rendezvous that one failing rank
breaks for every other rank at once, instead of leaving them to wait out a timeout."""

from __future__ import annotations

import threading


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
