"""``cllm batch prompts.jsonl -o results.jsonl``: many prompts, one result line each, resumable.

Each input line is a JSON string (a prompt) or an object (``prompt`` or ``messages``, optional
``id``, ``model`` and options). An item's id is its ``id``, else its line number. Each output line
is ``{"id", "response"}`` or ``{"id", "error"}``, written whole with one ``write`` to a file opened
for appending, so a kill never leaves half a line. Run again, it skips the ids that succeeded and
tries the failed ones again (their old lines are dropped first, by an atomic rewrite).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cllm.cli.args import int_at_least, parse_options
from cllm.cli.session import CliError, resolve_model

__all__ = ["configure_parser", "run"]


def add_limit_options(parser: argparse.ArgumentParser) -> None:
    """``--concurrency``, ``--rpm``, ``--tpm``: what `cllm batch` and `cllm file` share."""
    parser.add_argument("--concurrency", type=int_at_least(1), metavar="N", help="requests in flight at once")
    parser.add_argument("--rpm", type=int_at_least(1), metavar="N", help="requests per minute")
    parser.add_argument("--tpm", type=int_at_least(1), metavar="N", help="tokens per minute")
    parser.add_argument(
        "--option",
        nargs=2,
        action="append",
        metavar=("KEY", "VALUE"),
        dest="options",
        help="LiteLLM option for every request, repeatable; VALUE is JSON when it parses",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", metavar="PROMPTS.jsonl", help="one JSON string or object per line")
    parser.add_argument("-o", "--output", required=True, metavar="RESULTS.jsonl", help="where results go")
    parser.add_argument("-m", "--model", help="model for items that name none (default: the default model)")
    parser.add_argument("--retries", type=int_at_least(0), metavar="N", help="retries per item")
    add_limit_options(parser)


@dataclass(frozen=True, slots=True)
class _Item:
    id: Any
    line: int
    value: Any  # the parsed line, or None when it does not parse
    problem: str | None = None


def _key(item_id: Any) -> str:
    return json.dumps(item_id, sort_keys=True)


def read_items(path: Path) -> list[_Item]:
    """The input file's items; blank lines are skipped; refuses duplicate ids."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise CliError(f"cannot read {path}: {e}", 2) from e
    items, seen = [], set()
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError as e:
            items.append(_Item(number, number, None, f"line {number} is not JSON: {e}"))
            continue
        item_id = value.get("id", number) if isinstance(value, dict) else number
        if isinstance(item_id, dict | list):
            item_id = number
        key = _key(item_id)
        if key in seen:
            raise CliError(f"{path}: line {number} repeats the id {item_id!r}", 2)
        seen.add(key)
        items.append(_Item(item_id, number, value))
    return items


def _done_ids(output: Path) -> set[str]:
    """The ids that already succeeded in ``output``. Failed items' lines (and a torn last line, if
    anything else wrote one) are dropped with an atomic rewrite, so they can run again."""
    try:
        data = output.read_bytes()
    except FileNotFoundError:
        return set()
    except OSError as e:
        raise CliError(f"cannot read {output}: {e}", 2) from e
    kept, done, dropped = [], set(), False
    for raw in data.split(b"\n"):
        if not raw.strip():
            dropped = dropped or bool(raw)
            continue
        try:
            record = json.loads(raw)
        except ValueError:
            dropped = True
            continue
        if isinstance(record, dict) and "id" in record and record.get("response") is not None:
            done.add(_key(record["id"]))
            kept.append(raw)
        else:
            dropped = True
    if dropped or (data and not data.endswith(b"\n")):
        tmp = output.with_name(output.name + ".tmp")
        tmp.write_bytes(b"".join(line + b"\n" for line in kept))
        os.replace(tmp, output)
    return done


class _Appender:
    """Appends whole lines: one ``write`` each, on a descriptor opened with ``O_APPEND``."""

    def __init__(self, path: Path) -> None:
        try:
            self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as e:
            raise CliError(f"cannot write {path}: {e}", 2) from e

    def write(self, record: dict[str, Any]) -> None:
        data = (json.dumps(record, ensure_ascii=False, default=str) + "\n").encode("utf-8")
        written = os.write(self.fd, data)
        if written != len(data):  # a full disk: the file is left to be repaired on the next run
            raise OSError(f"short write ({written} of {len(data)} bytes)")

    def close(self) -> None:
        os.close(self.fd)


def _error_record(error: BaseException, model: str) -> dict[str, Any]:
    from cllm.cli.errors import describe_error

    record: dict[str, Any] = {"type": type(error).__name__, "message": describe_error(error, model)}
    status = getattr(error, "status_code", None)
    if status is not None:
        record["status_code"] = status
    return record


def _to_batch_input(item: _Item) -> Any:
    value = item.value
    if isinstance(value, dict):
        return {**value, "id": item.id}
    if isinstance(value, str):
        return {"prompt": value, "id": item.id}
    return {"id": item.id, "prompt": value}  # refused by the batch with a clear message


def _pipe_line(done: int, total: int, item_id: Any, record: dict[str, Any]) -> str:
    if "error" in record:
        return f"[{done}/{total}] {item_id}: failed: {record['error']['message']}"
    response = record["response"]
    usage = response.get("usage") or {}
    tokens = f", {usage.get('total_tokens')} tokens" if usage.get("total_tokens") else ""
    return f"[{done}/{total}] {item_id}: ok ({response.get('duration') or 0:.1f} s{tokens})"


def _pending(items: list[_Item], done: set[str]) -> Iterator[_Item]:
    return (item for item in items if _key(item.id) not in done)


async def _run(args: argparse.Namespace, model: str, todo: list[_Item], out: _Appender, total: int) -> int:
    import cllm

    limits = None
    if args.concurrency or args.rpm or args.tpm:
        limits = cllm.Limits(concurrency=args.concurrency, rpm=args.rpm, tpm=args.tpm)
    options = parse_options(args.options)
    if args.retries is not None:
        options["retries"] = args.retries
    tty = sys.stderr.isatty()
    failed = 0
    finished = total - len(todo)
    # Lines that do not parse fail without a call.
    runnable = [item for item in todo if item.problem is None]
    for item in todo:
        if item.problem is not None:
            failed += 1
            finished += 1
            refused = {"id": item.id, "error": {"type": "ValueError", "message": item.problem}}
            out.write(refused)
            if not tty:
                print(_pipe_line(finished, total, item.id, refused), file=sys.stderr, flush=True)
    batch = cllm.abatch(
        model,
        [_to_batch_input(item) for item in runnable],
        limits=limits,
        concurrency=args.concurrency,
        progress=tty,
        **options,
    )
    async for result in batch:
        item = runnable[result.index]
        finished += 1
        if result.error is None and result.response is not None:
            record: dict[str, Any] = {"id": item.id, "response": result.response.to_dict()}
        else:
            failed += 1
            assert result.error is not None
            record = {"id": item.id, "error": _error_record(result.error, model)}
        out.write(record)
        if not tty:
            print(_pipe_line(finished, total, item.id, record), file=sys.stderr, flush=True)
    return failed


def run(args: argparse.Namespace) -> int:
    """Run ``cllm batch``; the exit code (1 if any item failed, 130 on Ctrl-C)."""
    items = read_items(Path(args.input))
    output = Path(args.output)
    done = _done_ids(output)
    todo = list(_pending(items, done))
    if not todo:
        print(f"cllm: all {len(items)} items are already in {output}", file=sys.stderr)
        return 0
    model = resolve_model(args.model)
    if done:
        print(f"cllm: {len(items) - len(todo)} of {len(items)} items already done, skipped", file=sys.stderr)
    out = _Appender(output)
    try:
        failed = asyncio.run(_run(args, model, todo, out, len(items)))
    finally:
        out.close()
    if failed:
        print(f"cllm: {failed} of {len(todo)} items failed (see {output})", file=sys.stderr)
        return 1
    return 0
