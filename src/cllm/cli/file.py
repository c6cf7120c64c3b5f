"""``cllm file PATH "instruction"``: a big file in sections, each answer under ``## Section i/n``.

Answers come in input order: the first section's streams live while the later ones run and wait
their turn. The whole run is logged as one conversation: one response per section (and one for
``--combine``).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from cllm.cli.args import int_at_least, parse_options
from cllm.cli.batch import add_limit_options
from cllm.cli.session import CliError, open_store, resolve_alias, resolve_model

__all__ = ["configure_parser", "run"]


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", metavar="PATH", help="a UTF-8 text file")
    parser.add_argument("instruction", help="what to do with each section")
    parser.add_argument("-m", "--model", help="model name (default: the default model)")
    parser.add_argument(
        "--section-tokens",
        type=int_at_least(0),
        default=3000,
        metavar="N",
        help="tokens per section (default 3000)",
    )
    parser.add_argument(
        "--overlap",
        type=int_at_least(0),
        default=200,
        metavar="N",
        help="tokens repeated between sections (default 200)",
    )
    parser.add_argument("--combine", metavar="INSTRUCTION", help="then merge the section answers with this")
    parser.add_argument("--no-log", action="store_true", help="do not save the conversation")
    parser.add_argument("--raw", action="store_true", help="print raw text, no markdown rendering")
    add_limit_options(parser)


async def _process(
    args: argparse.Namespace, model: str, log: Any, alias_options: dict[str, Any] | None = None
) -> int:
    import cllm
    from cllm.cli.display import Ui
    from cllm.cli.errors import describe_error

    ui = Ui(raw=args.raw)
    _write = ui.output.write

    limits = None
    if args.rpm or args.tpm:
        limits = cllm.Limits(concurrency=args.concurrency, rpm=args.rpm, tpm=args.tpm)
    options = {**(alias_options or {}), **parse_options(args.options)}
    failed = 0
    parts = cllm.aprocess_file(
        args.path,
        args.instruction,
        model=model,
        limits=limits,
        section_tokens=args.section_tokens,
        overlap=args.overlap,
        concurrency=args.concurrency or 4,
        combine=args.combine,
        **options,
    )
    current: int | None = None
    async for part in parts:
        if part.index != current:
            current = part.index
            _write(("\n\n" if part.index else "") + f"## {part.heading}\n\n")
        if isinstance(part.event, cllm.TextDelta):
            _write(part.event.text)
        elif part.event is None:
            if part.response is not None:
                log(part)
            if part.error is not None:
                failed += 1
                print(f"\ncllm: {part.heading.lower()}: {describe_error(part.error, model)}", file=sys.stderr)
    _write("\n")
    ui.output.end()
    return failed


def run(args: argparse.Namespace) -> int:
    """Run ``cllm file``; the exit code (1 if a section failed)."""
    path = Path(args.path)
    if not path.is_file():
        raise CliError(f"no such file: {path}", 2)
    if args.section_tokens < 1:
        raise CliError("--section-tokens must be 1 or more", 2)
    if args.overlap * 2 >= args.section_tokens and args.overlap:
        raise CliError("--overlap must be less than half of --section-tokens", 2)
    model, alias_options = resolve_alias(resolve_model(args.model))
    log = _Log(None if args.no_log else _store(), model, args)
    try:
        failed = asyncio.run(_process(args, model, log, alias_options))
    except ValueError as e:  # not UTF-8 text
        raise CliError(str(e), 2) from e
    return 1 if failed else 0


def _store() -> Any:
    from cllm.cli.display import Ui

    return open_store(Ui(raw=True), required=False)


class _Log:
    """Each section's response into one conversation, created with the first."""

    def __init__(self, store: Any, model: str, args: argparse.Namespace) -> None:
        from cllm.cli.display import Ui
        from cllm.cli.exchange import ConversationLog

        self.log = ConversationLog(store, Ui(raw=True))
        self.model = model
        self.options = parse_options(args.options)
        self.name = Path(args.path).name
        self.args = args
        self.answers: list[str] = []

    def __call__(self, part: Any) -> None:
        from cllm._files import combine_prompt, section_prompt

        if part.combined:
            prompt = combine_prompt(self.args.combine, self.answers, self.name)
        else:
            prompt = section_prompt(self.args.instruction, part.section, part.total, self.name)
            self.answers.append(part.response.text)
        self.log.log(
            part.response,
            model=self.model,
            messages_in=[{"role": "user", "content": prompt}],
            prompt=f"## {part.heading}\n\n{prompt}",
            system=None,
            options=self.options,
        )
