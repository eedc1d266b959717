"""The ``brushwork`` command: thin argument parsing over the library.

Each area registers its own sub-commands (``register(subparsers)`` in ``<area>/commands.py``);
handlers import their heavy dependencies only when they run. A ``BrushworkError`` is printed as
one line on stderr and turns into a non-zero exit code; nothing user-caused shows a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from brushwork import __version__
from brushwork.errors import BrushworkError

# One line per area; order is the order in ``brushwork --help``.
COMMAND_MODULES = [
    "brushwork.engine.commands",
    "brushwork.world.commands",
    "brushwork.evaluate.commands",
    "brushwork.train.commands",
    "brushwork.models.commands",
    "brushwork.serve.commands",
]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2, as argparse does, without the usage dump
        self.exit(2, f"error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="brushwork", description="Offline-first text-to-image studio.")
    parser.add_argument("--version", action="version", version=f"brushwork {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def quiet_libraries() -> None:
    """Keep library chatter (weight-loading bars, optional-backend notices) off the CLI's stderr."""
    import logging
    import os

    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    for name in ("transformers", "diffusers", "huggingface_hub"):
        logging.getLogger(name).setLevel(logging.ERROR)


def main(argv: list[str] | None = None) -> int:
    quiet_libraries()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.handler(args) or 0)
    except BrushworkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
