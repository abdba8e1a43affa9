"""The Dockerfile and compose.yaml: a non-root image built from the lock, migrations before the app.

Docker is not needed: the Dockerfile is read as instructions and compose.yaml as YAML, and what
they hand to `keel` (commands, `KEEL_*` variables) is checked against the real CLI and Settings.
"""

from __future__ import annotations

import json
import re
import secrets
import shlex
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import typer
import yaml  # type: ignore[import-untyped]  # PyYAML comes with uvicorn[standard]; it ships no types

from keel import cli
from keel.core.config import Settings

ROOT = Path(__file__).resolve().parent.parent
KEEL_SERVICES = ("migrate", "api", "worker")
SETTINGS_VARIABLES = frozenset(f"KEEL_{name.upper()}" for name in Settings.model_fields)


# --- reading the Dockerfile ------------------------------------------------------------------------
@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str


def _instructions(text: str) -> list[Instruction]:
    """Logical Dockerfile lines (continuations joined, comments dropped) as keyword and arguments."""
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        lines.append(pending + line)
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    return [Instruction(keyword.upper(), rest.strip()) for keyword, _, rest in (line.partition(" ") for line in lines)]


def _stages() -> list[list[Instruction]]:
    stages: list[list[Instruction]] = []
    for instruction in _instructions((ROOT / "Dockerfile").read_text()):
        if instruction.keyword == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def _env(stage: list[Instruction]) -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction in stage:
        if instruction.keyword == "ENV":
            for item in shlex.split(instruction.arguments):
                name, _, value = item.partition("=")
                env[name] = value
    return env


def _exec_form(stage: list[Instruction], keyword: str) -> list[str]:
    """The last KEYWORD of the stage, which must be in exec (JSON) form: no shell in between."""
    arguments = [instruction.arguments for instruction in stage if instruction.keyword == keyword][-1]
    value = json.loads(arguments)
    assert isinstance(value, list)
    return [str(item) for item in value]


# --- reading compose.yaml --------------------------------------------------------------------------
def _compose() -> dict[str, Any]:
    document = yaml.safe_load((ROOT / "compose.yaml").read_text())
    assert isinstance(document, dict)
    return document


def _services() -> dict[str, dict[str, Any]]:
    services = _compose()["services"]
    assert isinstance(services, dict)
    return services


_VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def _interpolate(value: str, variables: Mapping[str, str]) -> str:
    """Compose's `${NAME}`, `${NAME:-default}` and `${NAME:?error}` substitution (and `$$`)."""

    def substitute(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"] or "", match["arg"] or ""
        present = variables.get(name)
        missing = present is None or (op.startswith(":") and present == "")
        if op.endswith("?") and missing:
            raise ValueError(f"required variable {name} is missing a value: {arg}")
        if op.endswith("-") and missing:
            return arg
        return present or ""

    return _VARIABLE.sub(substitute, value.replace("$$", "\0")).replace("\0", "$")


def _environment(service: str, variables: Mapping[str, str]) -> dict[str, str]:
    environment = _services()[service].get("environment", {})
    assert isinstance(environment, dict), "write environment as a mapping"
    return {name: _interpolate(str(value), variables) for name, value in environment.items()}


def _keel(arguments: list[str]) -> tuple[str, dict[str, Any]]:
    """Parse a `keel ...` command line as the real CLI would, without running it."""
    group = typer.main.get_command(cli.app)
    assert isinstance(group, typer.core.TyperGroup)
    name, *rest = arguments
    command = group.commands.get(name)
    assert command is not None, f"keel has no command {name!r}"
    # Raises a usage error for an option or value `keel` does not accept.
    return name, command.make_context(name, rest).params


def _condition(service: str, dependency: str) -> str:
    depends_on = _services()[service].get("depends_on", {})
    assert isinstance(depends_on, dict), f"{service}: write depends_on as a mapping with conditions"
    return str(depends_on[dependency]["condition"])


def _has_healthcheck(service: Mapping[str, Any]) -> bool:
    healthcheck = service.get("healthcheck", {})
    return bool(healthcheck.get("test")) and not healthcheck.get("disable", False)


# --- the image -------------------------------------------------------------------------------------
class TestImage:
    def test_is_built_in_one_stage_and_run_from_another_without_uv(self) -> None:
        *builders, final = _stages()
        assert builders, "multi-stage: the build tools stay in a builder stage"
        copies = [instruction.arguments for instruction in final if instruction.keyword == "COPY"]
        assert any(copy.startswith("--from=builder") and copy.endswith("/app/.venv /app/.venv") for copy in copies)
        assert not any("astral-sh/uv" in copy for copy in copies), "the final image ships no uv"
        assert not any("uv " in instruction.arguments for instruction in final if instruction.keyword == "RUN")

    def test_installs_dependencies_from_the_lock_before_the_code_in_a_cached_layer(self) -> None:
        builder = _stages()[0]
        env = _env(builder)
        assert env["UV_COMPILE_BYTECODE"] == "1"
        assert env["UV_LINK_MODE"] == "copy"
        syncs = [
            index
            for index, instruction in enumerate(builder)
            if instruction.keyword == "RUN" and "uv sync" in instruction.arguments
        ]
        source_copy = next(
            index
            for index, instruction in enumerate(builder)
            if instruction.keyword in {"COPY", "ADD"} and re.search(r"\bsrc\b", instruction.arguments)
        )
        assert len(syncs) == 2
        dependencies, project = (builder[index].arguments for index in syncs)
        for sync in (dependencies, project):
            assert "--locked" in sync, "an out-of-date uv.lock must fail the build"
            assert "--no-dev" in sync
            assert "--no-editable" in sync, "only the venv is copied: the project must be installed into it"
            assert "--mount=type=cache,target=/root/.cache/uv" in sync
        assert "--no-install-project" in dependencies
        assert "--no-install-project" not in project
        assert syncs[0] < source_copy < syncs[1], "the dependency layer must not depend on the source"

    def test_runs_as_a_non_root_user_that_exists(self) -> None:
        final = _stages()[-1]
        user = [instruction.arguments for instruction in final if instruction.keyword == "USER"][-1]
        uid, _, gid = user.partition(":")
        assert uid not in {"root", "0"}
        assert gid not in {"root", "0"}
        created = " ".join(instruction.arguments for instruction in final if instruction.keyword == "RUN")
        assert f"--uid {uid}" in created or f"useradd {uid}" in created

    def test_defaults_to_production_with_a_data_folder_the_user_owns(self) -> None:
        final = _stages()[-1]
        env = _env(final)
        assert env["KEEL_ENVIRONMENT"] == "production"
        assert {name for name in env if name.startswith("KEEL_")} <= SETTINGS_VARIABLES
        created = " ".join(instruction.arguments for instruction in final if instruction.keyword == "RUN")
        assert re.search(rf"install -d -o keel -g keel [^&]*{re.escape(env['KEEL_DATA_DIR'])}\b", created)

    def test_serves_keel_on_the_exposed_port_and_checks_its_health_with_python(self) -> None:
        final = _stages()[-1]
        assert _exec_form(final, "ENTRYPOINT") == ["keel"]
        scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
        assert scripts["keel"] == "keel.cli:app"
        name, params = _keel(_exec_form(final, "CMD"))
        assert name == "serve"
        assert params["host"] == "0.0.0.0"
        exposed = [instruction.arguments for instruction in final if instruction.keyword == "EXPOSE"]
        assert exposed == [str(params["port"])]
        healthcheck = [instruction.arguments for instruction in final if instruction.keyword == "HEALTHCHECK"]
        assert len(healthcheck) == 1
        probe = json.loads(healthcheck[0].partition("CMD ")[2])
        assert probe[0] == "python", "slim images have no curl or wget"
        assert f"http://127.0.0.1:{params['port']}/health" in probe[-1]

    def test_build_context_is_an_allow_list_without_secrets_or_local_state(self) -> None:
        patterns = [
            line.strip()
            for line in (ROOT / ".dockerignore").read_text().splitlines()
            if line.strip() and not line.startswith("#")
        ]
        assert patterns[0] == "*", "everything is left out unless named"
        allowed = {pattern.removeprefix("!").rstrip("/") for pattern in patterns if pattern.startswith("!")}
        assert {"pyproject.toml", "uv.lock", "README.md", "src"} <= allowed, "what the build copies"
        assert not any(path.startswith(".") for path in allowed), "no .env, .keel, .venv or .git"
        assert {"**/.env", "**/.keel", "**/__pycache__"} <= set(patterns), "not from inside src/ either"


# --- compose ---------------------------------------------------------------------------------------
class TestCompose:
    def test_migrations_run_once_and_before_the_api_and_workers(self) -> None:
        services = _services()
        assert _keel(services["migrate"]["command"])[0] == "migrate"
        assert services["migrate"]["restart"] == "no"
        assert _condition("migrate", "postgres") == "service_healthy"
        for service in ("api", "worker"):
            assert _condition(service, "migrate") == "service_completed_successfully"
            assert _condition(service, "redis") == "service_healthy"

    def test_commands_are_what_keel_accepts(self) -> None:
        services = _services()
        name, serve = _keel(services["api"]["command"])
        assert name == "serve"
        assert serve["host"] == "0.0.0.0"
        assert serve["workers"] >= 2
        assert any(str(port).endswith(f":{serve['port']}") for port in services["api"]["ports"])
        name, worker = _keel(services["worker"]["command"])
        assert name == "worker"
        assert worker["beat"], "the outbox relay schedule runs in this (single) worker"

    def test_everything_waited_on_or_long_running_is_health_checked(self) -> None:
        services = _services()
        for name, service in services.items():
            for dependency, rule in service.get("depends_on", {}).items():
                if rule["condition"] == "service_healthy":
                    assert _has_healthcheck(services[dependency]), f"{name} waits on {dependency}'s health"
        for name in ("api", "worker"):
            assert _has_healthcheck(services[name]), name
        probe = services["api"]["healthcheck"]["test"]
        assert probe[:2] == ["CMD", "python"]
        assert "http://127.0.0.1:8000/health" in probe[-1]

    def test_databases_are_not_published_and_keep_their_data(self) -> None:
        services = _services()
        volumes = _compose()["volumes"]
        for name in ("postgres", "redis"):
            assert "ports" not in services[name], f"{name} stays on the compose network"
        assert any(str(mount).split(":")[0] in volumes for mount in services["postgres"]["volumes"])

    def test_secret_key_is_required_not_defaulted(self) -> None:
        for service in KEEL_SERVICES:
            with pytest.raises(ValueError, match="KEEL_SECRET_KEY"):
                _environment(service, {})

    def test_only_real_settings_are_set(self) -> None:
        for service in KEEL_SERVICES:
            names = {name for name in _services()[service].get("environment", {}) if name.startswith("KEEL_")}
            assert names, service
            assert names <= SETTINGS_VARIABLES, f"{service}: unknown {sorted(names - SETTINGS_VARIABLES)}"

    @pytest.mark.usefixtures("isolated_env")
    @pytest.mark.parametrize("service", KEEL_SERVICES)
    def test_settings_pass_production_checks_and_point_at_the_compose_services(
        self, service: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        image_env = {name: value for name, value in _env(_stages()[-1]).items() if name.startswith("KEEL_")}
        compose_env = _environment(service, {"KEEL_SECRET_KEY": secrets.token_urlsafe(48)})
        for name, value in {**image_env, **compose_env}.items():
            monkeypatch.setenv(name, value)

        settings = Settings()

        assert settings.is_production
        assert settings.sqlalchemy_url.startswith("postgresql+asyncpg://")
        assert urlsplit(settings.sqlalchemy_url).hostname in _services()
        assert settings.broker_url is not None, "keel worker refuses to start without a broker"
        assert urlsplit(settings.broker_url).hostname in _services()

    def test_worker_keeps_its_data_folder_in_a_volume(self) -> None:
        data_dir = _env(_stages()[-1])["KEEL_DATA_DIR"]
        mounts = [str(mount).split(":") for mount in _services()["worker"]["volumes"]]
        assert any(source in _compose()["volumes"] and target == data_dir for source, target, *_ in mounts)


class TestInterpolation:
    """The small compose interpolation the tests above rely on."""

    @pytest.mark.parametrize(
        ("value", "variables", "expected"),
        [
            ("${A}", {"A": "x"}, "x"),
            ("${A}", {}, ""),
            ("${A:-d}", {}, "d"),
            ("${A:-d}", {"A": ""}, "d"),
            ("${A-d}", {"A": ""}, ""),
            ("pre-${A:?e}-post", {"A": "x"}, "pre-x-post"),
            ("$${A}", {"A": "x"}, "${A}"),
        ],
    )
    def test_substitutes(self, value: str, variables: dict[str, str], expected: str) -> None:
        assert _interpolate(value, variables) == expected

    def test_required_variable_names_itself(self) -> None:
        with pytest.raises(ValueError, match="required variable A is missing a value: set A"):
            _interpolate("${A:?set A}", {"A": ""})
