"""The parser class every command uses: defaults shown in help, and an epilog naming the environment
variables the command reads and the exit codes."""

from __future__ import annotations

import argparse
import textwrap
from typing import TYPE_CHECKING, Any

from tiktok_pipeline.cli.errors import EXIT_CODES_HELP
from tiktok_pipeline.cli.settings import env_help


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Shows "(default: X)" after every option that has a default, and keeps line breaks as written."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if (
            action.default is None
            or action.default is False
            or action.default == argparse.SUPPRESS
            or ("%(default)" in text)
        ):
            return text
        if action.option_strings or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE):
            text += " (default: %(default)s)"
        return text


def wrap(text: str, width: int = 100) -> str:
    """Paragraphs (blank-line separated) filled to ``width``."""
    return "\n\n".join(textwrap.fill(" ".join(p.split()), width) for p in text.split("\n\n"))


class Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, epilog_vars: tuple[str, ...] = (), **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        if kwargs.get("description"):
            kwargs["description"] = wrap(kwargs["description"])
        parts = [kwargs.pop("epilog", None), env_help(epilog_vars) if epilog_vars else None, EXIT_CODES_HELP]
        kwargs["epilog"] = "\n\n".join(p for p in parts if p)
        super().__init__(*args, **kwargs)


if TYPE_CHECKING:  # generic only in typeshed, not at run time
    Subparsers = argparse._SubParsersAction[Parser]
else:
    Subparsers = argparse._SubParsersAction
