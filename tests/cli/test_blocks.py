"""Splitting streamed markdown into finished blocks and the tail the terminal view redraws."""

from __future__ import annotations

import random

from cllm.cli.blocks import MarkdownSplitter, split_blocks

ANSWER = """# Title
Intro paragraph
on two lines.

- a
- b

```python
x = 1

y = 2
```
After the code.

~~~~
```
still code
~~~~

Last paragraph, unfinished"""


def test_blocks_end_at_blank_lines_headings_and_closing_fences() -> None:
    blocks, tail = split_blocks(ANSWER)
    assert blocks == [
        "# Title",
        "Intro paragraph\non two lines.",
        "- a\n- b",
        "```python\nx = 1\n\ny = 2\n```",
        "After the code.",
        "~~~~\n```\nstill code\n~~~~",
    ]
    assert tail == "Last paragraph, unfinished"


def test_an_open_code_block_is_never_finished_by_its_blank_lines() -> None:
    blocks, tail = split_blocks("Text.\n\n```\na\n\n\nb\n")
    assert blocks == ["Text."]
    assert tail == "```\na\n\n\nb\n"


def test_a_fence_line_is_finished_only_once_its_newline_arrived() -> None:
    assert split_blocks("```\ncode\n```")[0] == []
    assert split_blocks("```\ncode\n```\n")[0] == ["```\ncode\n```"]
    # A shorter or different fence does not close it; a fence with an info string does not close it.
    assert split_blocks("````\na\n```\n~~~~\n```` x\n")[0] == []


def test_a_heading_is_finished_at_the_end_of_its_line() -> None:
    assert split_blocks("## Part")[0] == []
    assert split_blocks("## Part\nText")[0] == ["## Part"]
    assert split_blocks("#hashtag\nmore")[0] == []  # not a heading


def test_incremental_feeding_gives_the_same_blocks_for_any_split() -> None:
    expected, expected_tail = split_blocks(ANSWER)
    rng = random.Random(4)
    for _ in range(200):
        splitter = MarkdownSplitter()
        blocks: list[str] = []
        text = ""
        cuts = sorted(rng.sample(range(1, len(ANSWER)), rng.randint(1, 30)))
        for end in [*cuts, len(ANSWER)]:
            text = ANSWER[:end]
            blocks += splitter.feed(text)
        assert blocks == expected
        assert splitter.tail(text) == expected_tail


def test_finished_blocks_and_tail_keep_every_non_blank_line_once() -> None:
    blocks, tail = split_blocks(ANSWER)
    kept = [line for part in [*blocks, tail] for line in part.splitlines() if line.strip()]
    assert kept == [line for line in ANSWER.splitlines() if line.strip()]
