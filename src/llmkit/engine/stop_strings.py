"""Stop strings over streamed text: find the first complete one, and withhold what may begin one."""

from __future__ import annotations

from collections.abc import Sequence


class StopStrings:
    """A request's stop strings. The engine scans each new delta once and streams only safe text.

    Use: after each token, `find(text, previous_len)`; on a hit, truncate there and finish;
    otherwise emit up to `len(text) - holdback(text)`.
    """

    def __init__(self, stops: Sequence[str], keep: bool = False):
        if any(s == "" for s in stops):
            raise ValueError("stop strings must not be empty")
        self.stops = tuple(dict.fromkeys(stops))
        self.keep = keep  # the text ends after the stop string instead of before it
        self.longest = max((len(s) for s in self.stops), default=0)
        # Every proper prefix of a stop: a tail of the text equal to one could still grow into a stop.
        self._prefixes = {s[:k] for s in self.stops for k in range(1, len(s))}

    def __bool__(self) -> bool:
        return bool(self.stops)

    def find(self, text: str, start: int = 0) -> int | None:
        """Where the earliest stop string begins, among occurrences that end after `start`; None if none."""
        hits = []
        for stop in self.stops:
            # An occurrence ending after `start` begins at `start - len(stop) + 1` or later.
            at = text.find(stop, max(0, start - len(stop) + 1))
            if at != -1:
                hits.append(at)
        return min(hits, default=None)

    def cut(self, text: str, start: int = 0) -> int | None:
        """Where the output ends if a stop string completed after `start`: before the earliest one, or after it
        when stop strings are kept; None if none completed."""
        at = self.find(text, start)
        if at is None or not self.keep:
            return at
        return at + min(len(stop) for stop in self.stops if text.startswith(stop, at))  # the first to complete

    def holdback(self, text: str) -> int:
        """How many trailing characters of `text` could be the start of a stop string."""
        for k in range(min(len(text), self.longest - 1), 0, -1):
            if text[-k:] in self._prefixes:
                return k
        return 0
