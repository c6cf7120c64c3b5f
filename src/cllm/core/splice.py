"""Joining a continuation onto the text already shown, so the seam repeats and drops nothing.

Pure: text in, text out. A continuation is asked for with the text shown so far as an assistant
prefix. Some providers send that prefix back at the start of their answer (Mistral), and some
strip the prefix's trailing whitespace before continuing and then send it again (Anthropic). The
splicer holds back the start of the continuation until it can tell, then lets everything through.
"""

from __future__ import annotations

__all__ = ["PrefixSplicer"]


def _trailing_space(text: str) -> str:
    return text[len(text.rstrip()) :] if text.strip() else ""


def _common_prefix(a: str, b: str) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class PrefixSplicer:
    """Feed the continuation's text pieces; get back what to show after ``prefix``.

    The start of the continuation is held while it could still be an echo of the prefix (it is a
    strict beginning of it) or a repeat of the prefix's trailing whitespace; `flush` gives back
    whatever is still held when the continuation ends.
    """

    __slots__ = ("_held", "_prefix", "_seam", "_settled", "echoed", "seam_dropped")

    def __init__(self, prefix: str) -> None:
        self._prefix = prefix
        self._seam = _trailing_space(prefix)
        self._held = ""
        self._settled = not prefix
        #: Whether the continuation began with the whole prefix (which was then dropped).
        self.echoed = False
        #: How many characters of repeated whitespace were dropped at the seam.
        self.seam_dropped = 0

    @property
    def settled(self) -> bool:
        return self._settled

    def feed(self, text: str) -> str:
        """The part of ``text`` to show now."""
        if self._settled:
            return text
        held = self._held + text
        prefix = self._prefix
        if not self.echoed:
            if len(held) < len(prefix) and prefix.startswith(held):
                self._held = held
                return ""  # could still be an echo
            if held.startswith(prefix):
                self.echoed = True
                held = held[len(prefix) :]
        # Past any echo: drop a repeat of the prefix's trailing whitespace.
        seam = self._seam
        if seam:
            common = _common_prefix(held, seam)
            if common == len(held) and common < len(seam):
                self._held = held
                return ""  # all whitespace so far: could still be a repeat
            held = held[common:]
            self.seam_dropped = common
        self._held = ""
        self._settled = True
        return held

    def flush(self) -> str:
        """The continuation ended: whatever is still held, less a repeated seam."""
        held, self._held = self._held, ""
        if not self._settled:
            self._settled = True
            if self.echoed or (self._seam and self._seam.startswith(held)):
                # Only whitespace the prefix already ends with (after an echo, if any).
                self.seam_dropped = len(held)
                return ""
        return held
