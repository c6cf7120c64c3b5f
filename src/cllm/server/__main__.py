"""``python -m cllm.server``: the same as ``cllm serve``."""

from __future__ import annotations

import argparse
import sys

from cllm.server.command import configure_parser, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cllm.server")
    configure_parser(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
