"""The live tool-call progress line, driven in process."""

from __future__ import annotations

import io
import time

from cllm.cli.display import Ui
from cllm.core.events import ToolCallDelta, ToolCallStart


class TtyBuffer(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_of_long_arguments_counts_every_byte_and_shows_the_end() -> None:
    stderr = TtyBuffer()
    ui = Ui(stdout=io.StringIO(), stderr=stderr)
    view = ui.call("model")
    view.event(ToolCallStart(0, "call_1", "write_file"))
    pieces = [f"é{i:06d} " for i in range(100_000)]  # 900 kB of arguments, 9 bytes a piece
    for piece in pieces:
        view.event(ToolCallDelta(0, "call_1", None, piece, None))
    time.sleep(0.06)  # the line is redrawn at most every 50 ms
    view.event(ToolCallDelta(0, "call_1", None, "end", None))
    last = stderr.getvalue().rsplit("\r\x1b[2K", 1)[-1]
    assert last.startswith(f"⚙ write_file · {100_000 * 9 + 3} bytes · …")
    assert last.endswith("é099998 é099999 end")
