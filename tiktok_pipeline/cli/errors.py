"""Exit codes, and which failure earns which: a pure decision, tested by table.

0  done
1  the post failed, was rejected, or did not finish in time; any other failed operation
2  usage: bad arguments, or a post the pipeline would refuse as written
3  a dependency is unreachable: Kafka, auth_service or S3
4  configuration: a variable missing or malformed, or refused credentials
"""

from __future__ import annotations

from enum import IntEnum

from common.errors import ConfigError, InvalidInput, PipelineError, Unauthorized


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1
    USAGE = 2
    UNREACHABLE = 3
    CONFIG = 4


EXIT_CODES_HELP = """exit codes:
  0  done
  1  the post failed, was rejected, or did not finish within --timeout; any other failed operation
  2  usage error: bad arguments, or a post the pipeline would refuse as written
  3  a dependency is unreachable (Kafka, auth_service, S3)
  4  configuration error (a variable missing or malformed, credentials refused)"""


class Unreachable(PipelineError):
    """A dependency did not answer: ``dependency`` names it, ``address`` says where it was looked for."""

    code = "unreachable"

    def __init__(self, dependency: str, address: str, detail: str) -> None:
        super().__init__(f"{dependency} is unreachable at {address}: {detail}")
        self.dependency, self.address = dependency, address


class PostNotDone(PipelineError):
    """The followed post ended in a state other than published, or did not end in time."""

    code = "post_not_done"


def exit_code_for(exc: BaseException) -> ExitCode:
    """The exit code a failure ends the command with (anything unexpected: 1)."""
    if isinstance(exc, Unreachable):
        return ExitCode.UNREACHABLE
    if isinstance(exc, ConfigError | Unauthorized):
        return ExitCode.CONFIG
    if isinstance(exc, InvalidInput):
        return ExitCode.USAGE
    return ExitCode.FAILED


def one_line(text: str, limit: int = 300) -> str:
    """A message that fits one terminal line: the first line, cut at ``limit`` characters."""
    first = text.strip().splitlines()[0] if text.strip() else ""
    return first if len(first) <= limit else first[: limit - 1] + "…"
