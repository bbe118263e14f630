"""`tiktok-pipeline` fits a shell: --version, help, exit codes, one line (never a traceback) for an
unreachable dependency or a configuration error. Run through the installed entry point; nothing
here needs the pipeline, only a closed port (and the stack for the S3 and topic cases)."""

import argparse
import json
import re
from importlib.metadata import version

import pytest

from common.kafka import DEFAULT_PARTITIONS
from publish_service.settings import Settings as PublishSettings
from tests.cli.conftest import run_cli
from tiktok_pipeline.cli.main import build_parser
from tiktok_pipeline.local import free_port

COMMANDS = [
    "create-topics",
    "migrate",
    "rotate-keys",
    "connect",
    "accounts",
    "submit",
    "follow",
    "tail",
    "replay-dlq",
]


def closed_port_url():
    return f"127.0.0.1:{free_port()}"  # bound and released: nothing listens there


def test_version_prints_the_installed_version():
    code, out, err = run_cli("--version")
    assert code == 0, err
    assert out.strip() == f"tiktok-pipeline {version('tiktok-pipeline')}"


def test_top_level_help_lists_commands_and_exit_codes_without_rst_markup():
    code, out, _ = run_cli("--help")
    assert code == 0
    assert "`" not in out
    for command in COMMANDS:
        assert command in out
    assert "exit codes:" in out and "3  a dependency is unreachable" in out


def _subcommand_parsers():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_has_help_and_shows_its_default(command):
    sub = _subcommand_parsers()[command]
    for action in sub._actions:
        assert action.help, f"{command} {action.option_strings or action.dest} has no help"
    code, out, _ = run_cli(command, "--help")
    assert code == 0
    for action in sub._actions:
        default = action.default
        if default in (None, argparse.SUPPRESS) or isinstance(default, bool):
            continue
        flag = action.option_strings[-1]
        options = out.split("\noptions:", 1)[1].split("\n\n", 1)[0]
        block = options.split(f"\n  {flag}", 1)[1].split("\n  -", 1)[0]
        assert f"(default: {default})" in " ".join(block.split()), f"{command} {flag}: {block}"
    assert "exit codes:" in out


@pytest.mark.parametrize(
    ("command", "variables"),
    [
        ("create-topics", ["KAFKA_BOOTSTRAP_SERVERS", "TOPIC_PREFIX"]),
        ("accounts", ["AUTH_SERVICE_URL", "API_KEY"]),
        ("connect", ["AUTH_SERVICE_URL"]),
        ("submit", ["KAFKA_BOOTSTRAP_SERVERS", "S3_ENDPOINT_URL", "S3_BUCKET"]),
        ("follow", ["KAFKA_BOOTSTRAP_SERVERS"]),
        ("tail", ["KAFKA_BOOTSTRAP_SERVERS"]),
        ("replay-dlq", ["KAFKA_BOOTSTRAP_SERVERS"]),
        ("migrate", ["DATABASE_URL"]),
        ("rotate-keys", ["DATABASE_URL", "TOKEN_KEYS"]),
    ],
)
def test_help_names_the_environment_variables_a_command_reads(command, variables):
    code, out, _ = run_cli(command, "--help")
    assert code == 0
    section = out.split("environment variables read:", 1)[1]
    for variable in variables:
        assert re.search(rf"^  {variable}\b", section, re.MULTILINE), f"{command}: {variable} missing"
    assert "KAFKA_BOOTSTRAP_SERVERS (default 127.0.0.1:19092)" in out or command in (
        "accounts", "connect", "migrate", "rotate-keys",
    )  # fmt: skip


def test_one_partition_default_everywhere():
    code, out, _ = run_cli("create-topics", "--help")
    assert code == 0 and f"(default: {DEFAULT_PARTITIONS})" in " ".join(out.split())
    assert DEFAULT_PARTITIONS == 6
    assert PublishSettings.__dataclass_fields__["kafka_partitions"].default == DEFAULT_PARTITIONS


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["no-such-command"],
        ["submit", "clip.mp4"],  # --account missing
        ["create-topics", "--partitions", "0"],
        ["follow", "p1", "--timeout", "soon"],
    ],
)
def test_usage_errors_exit_2(args):
    code, out, err = run_cli(*args)
    assert code == 2, err
    assert out == "" and "usage:" in err


def _one_line_failure(code, out, err, expected_code, *words):
    assert code == expected_code, (out, err)
    assert out == ""
    assert "Traceback" not in err and "Unclosed" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for word in words:
        assert word in lines[0], lines[0]


@pytest.mark.parametrize(
    "args",
    [
        ["follow", "p1", "--timeout", "20"],
        ["tail", "--idle-exit", "1"],
        ["create-topics"],
        ["replay-dlq", "--idle-exit", "1"],
        ["submit", "s3://media/clip.mp4", "--account", "a1", "--privacy", "SELF_ONLY"],
    ],
)
def test_kafka_unreachable_is_one_line_and_exit_3(args):
    kafka = closed_port_url()
    code, out, err = run_cli(*args, env={"KAFKA_BOOTSTRAP_SERVERS": kafka}, timeout=120)
    _one_line_failure(code, out, err, 3, "Kafka", kafka)


@pytest.mark.parametrize("args", [["accounts"], ["accounts", "--check", "--json"]])
def test_auth_service_unreachable_is_one_line_and_exit_3(args):
    url = f"http://{closed_port_url()}"
    code, out, err = run_cli(*args, env={"AUTH_SERVICE_URL": url, "API_KEY": "k"})
    _one_line_failure(code, out, err, 3, "auth_service", url)


def test_s3_unreachable_is_one_line_and_exit_3(tmp_path):
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\0" * 1024)
    endpoint = f"http://{closed_port_url()}"
    env = {"S3_ENDPOINT_URL": endpoint, "S3_ACCESS_KEY_ID": "a", "S3_SECRET_ACCESS_KEY": "b"}
    code, out, err = run_cli(
        "submit", str(video), "--account", "a1", "--privacy", "SELF_ONLY", env=env, timeout=180
    )
    # the progress bar may leave its last frame on stderr; the error is the last line
    assert code == 3, err
    assert out == "" and "Traceback" not in err
    assert "S3" in err.strip().splitlines()[-1] and endpoint in err.strip().splitlines()[-1]


@pytest.mark.parametrize(
    ("args", "env", "words"),
    [
        (["accounts"], {"API_KEY": ""}, ["API_KEY"]),
        (
            ["submit", "clip.mp4", "--account", "a1", "--privacy", "SELF_ONLY"],
            {"S3_ENDPOINT_URL": ""},
            ["S3_ENDPOINT_URL"],
        ),
    ],
)
def test_configuration_errors_exit_4(args, env, words):
    code, out, err = run_cli(*args, env=env)
    _one_line_failure(code, out, err, 4, "configuration error", *words)


def test_a_post_the_pipeline_would_refuse_is_a_usage_error_before_any_upload(tmp_path):
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\0")
    # no privacy level for a direct post: refused before S3 is even configured
    env = {"S3_ENDPOINT_URL": "http://127.0.0.1:9", "S3_ACCESS_KEY_ID": "a", "S3_SECRET_ACCESS_KEY": "b"}
    code, out, err = run_cli("submit", str(video), "--account", "a1", env=env)
    _one_line_failure(code, out, err, 2, "privacy_level")


def test_connect_json_is_machine_readable():
    code, out, _ = run_cli("connect", "--json", env={"AUTH_SERVICE_URL": "http://127.0.0.1:8081/"})
    assert code == 0
    assert json.loads(out) == {"connect_url": "http://127.0.0.1:8081/v1/connect"}
