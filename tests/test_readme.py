"""The README's two commands: they work with nothing but Python and pip, and CI runs the same one.

Installing uv needs the package index, so the commands are read here, not run; they were run by
hand in a fresh virtual environment on a clean clone.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
CI_RUN = (ROOT / ".ci" / "run").read_text()


def first_code_block() -> list[str]:
    found = re.search(r"^```sh\n(.*?)^```", README, flags=re.MULTILINE | re.DOTALL)
    assert found is not None, "the README starts with a ```sh block"
    return [line for line in found.group(1).splitlines() if line.strip()]


def steps(command: str) -> list[list[str]]:
    """A `a && b` command line as its steps, each a list of words, comments dropped."""
    words = shlex.split(command, comments=True)
    parts: list[list[str]] = [[]]
    for word in words:
        if word == "&&":
            parts.append([])
        else:
            parts[-1].append(word)
    return parts


def readme_commands() -> dict[str, list[list[str]]]:
    """The README's commands by what they run ("serve", "pytest"), as their steps."""
    commands = {}
    for line in first_code_block():
        parts = steps(line)
        what = "serve" if parts[-1][-2:] == ["keel", "serve"] else parts[-1][-1]
        commands[what] = parts
    return commands


def test_the_readme_starts_with_the_service_and_the_test_suite() -> None:
    assert set(readme_commands()) == {"serve", "pytest"}


def test_each_command_brings_uv_with_python_and_pip_alone() -> None:
    for what, parts in readme_commands().items():
        # pip of the same python3 that then runs uv as a module: no uv on PATH needed, and
        # no PATH change for the scripts folder a --user install would put it in.
        assert len(parts) == 2, what
        install, run = parts
        assert install[:4] == ["python3", "-m", "pip", "install"], what
        assert install[-1] == "uv", what
        assert run[:4] == ["python3", "-m", "uv", "run"], what


def test_ci_runs_the_readmes_test_command() -> None:
    readme_test = " && ".join(shlex.join(part) for part in readme_commands()["pytest"])
    runs = []
    for line in CI_RUN.splitlines():
        if "pytest" in line and not line.lstrip().startswith("#"):
            runs.append(line.strip())

    assert len(runs) == 1, runs
    assert runs[0].startswith(readme_test + " "), (runs[0], readme_test)
    extra = shlex.split(runs[0].removeprefix(readme_test))
    assert all(option.startswith("-") for option in extra), extra  # options to pytest, nothing more


def test_ci_uses_the_uv_the_readme_installs() -> None:
    code = [line for line in CI_RUN.splitlines() if not line.lstrip().startswith("#")]
    bare = [line for line in code if re.search(r"(?<!python3 -m )\buv (?:run|sync)\b", line)]

    assert bare == []
    assert not any("command -v uv" in line for line in code), "CI must not use a uv found on PATH"
