"""deploy/lotse-admin without systemd: a stand-in `systemd-run` on the PATH records what the
script asks systemd for and then does what systemd would do with it (a clean environment
plus the `--setenv` and the environment file, the credential in $CREDENTIALS_DIRECTORY,
the umask), so real lotse commands run through the script.

What systemd itself would judge is judged where it can be without a running systemd:
the settings are the unit's (deploy/lotse.service) – user, state directory and its mode,
umask, credential, environment file – and, where `systemd-analyze` is installed, they
verify as unit settings.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.test_deploy import verify_unit

ADMIN = ROOT / "deploy" / "lotse-admin"
UNIT = ROOT / "deploy" / "lotse.service"
SHARED = ("DynamicUser", "User", "Group", "StateDirectory", "StateDirectoryMode", "UMask")
FAKE_SYSTEMD_RUN = textwrap.dedent(
    '''\
    #!{python}
    """systemd-run for the test: record the call, then run the command as systemd would."""
    import json, os, shutil, subprocess, sys, tempfile

    args = sys.argv[1:]
    options = []
    while args and args[0].startswith("--"):
        options.append(args.pop(0))
    with open(os.environ["FAKE_SYSTEMD_LOG"], "a") as log:
        log.write(json.dumps({{"options": options, "command": args}}) + "\\n")
    properties = [o.split("=", 1)[1] for o in options if o.startswith("--property=")]
    environment = {{"PATH": "/usr/bin:/bin"}}  # a service starts with a clean environment
    credentials = tempfile.mkdtemp()
    umask = 0o022
    for item in properties:
        key, value = item.split("=", 1)
        if key == "EnvironmentFile":
            for line in open(value):
                line = line.strip()
                if line and not line.startswith("#"):
                    name, _, setting = line.partition("=")
                    environment[name] = setting
        elif key == "LoadCredential":
            name, path = value.split(":", 1)
            shutil.copy(path, os.path.join(credentials, name))
            environment["CREDENTIALS_DIRECTORY"] = credentials
        elif key == "UMask":
            umask = int(value, 8)
    for option in options:
        if option.startswith("--setenv="):
            name, _, setting = option.removeprefix("--setenv=").partition("=")
            environment[name] = setting
    os.umask(umask)
    result = subprocess.run(args, env=environment)
    shutil.rmtree(credentials)
    sys.exit(result.returncode)
    '''
)


class Machine:
    """/etc/lotse and /opt/lotse in a folder, and systemd-run replaced by the stand-in."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.etc = folder / "etc"
        self.state = folder / "state"
        self.log = folder / "systemd-run.jsonl"
        bin_dir = folder / "bin"
        for path in (self.etc, self.state, bin_dir):
            path.mkdir(mode=0o700)
        fake = bin_dir / "systemd-run"
        fake.write_text(FAKE_SYSTEMD_RUN.format(python=sys.executable), encoding="utf-8")
        fake.chmod(0o755)
        self.path = f"{bin_dir}:{os.environ['PATH']}"
        self.lotse = Path(sys.executable).with_name("lotse")
        assert self.lotse.is_file(), f"{self.lotse} is missing: pip install -e . first"
        (self.etc / "config.toml").write_text(
            f'[storage]\nurl = "sqlite+aiosqlite:///{self.state}/lotse.db"\n'
            f'data_dir = "{self.state}"\nsecret_credential = "server.secret"\n',
            encoding="utf-8",
        )
        secret = self.etc / "server.secret"
        secret.write_text(base64.b64encode(os.urandom(32)).decode() + "\n", encoding="utf-8")
        secret.chmod(0o600)
        shutil.copy(ROOT / "deploy" / "lotse.env.example", self.etc / "lotse.env")

    def admin(
        self, *arguments: str, prefix: tuple[str, ...] = (), **extra: str
    ) -> subprocess.CompletedProcess[str]:
        environment = {
            "PATH": self.path,
            "LOTSE": str(self.lotse),
            "LOTSE_ETC": str(self.etc),
            "FAKE_SYSTEMD_LOG": str(self.log),
            **extra,
        }
        return subprocess.run(
            [*prefix, str(ADMIN), *arguments],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            stdin=subprocess.DEVNULL,
            env=environment,
        )

    def calls(self) -> list[dict[str, list[str]]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text(encoding="utf-8").splitlines()]


def _unit_settings() -> dict[str, str]:
    settings: dict[str, str] = {}
    for line in UNIT.read_text(encoding="utf-8").splitlines():
        key, equals, value = line.strip().partition("=")
        if equals and not line.startswith("#"):
            settings.setdefault(key, value)
    return settings


def _properties(options: list[str]) -> dict[str, str]:
    pairs = [o.removeprefix("--property=").split("=", 1) for o in options if "--property=" in o]
    return {key: value for key, value in pairs}


@pytest.fixture
def machine(tmp_path: Path) -> Machine:
    if os.geteuid() != 0:
        pytest.fail("lotse-admin runs only as root (as with sudo): run this test as root")
    return Machine(tmp_path)


def test_lotse_commands_run_through_it_as_the_service_would_run_them(machine: Machine) -> None:
    upgraded = machine.admin("db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    # the credential was read, not a secret made beside the data
    assert not (machine.state / "server.secret").exists()
    assert (machine.state / "lotse.db").exists()

    verified = machine.admin("audit", "verify")  # finds the configuration by $LOTSE_CONFIG
    assert verified.returncode == 0, verified.stderr
    assert "audit chain intact" in verified.stdout
    listed = machine.admin("counsellor", "list")
    assert listed.returncode == 0, listed.stderr

    refused = machine.admin("cases", "show", "L-2026-0001", "--key", "/nonexistent")
    assert refused.returncode not in (0, None)  # lotse's failure reaches the caller

    call = machine.calls()[0]
    assert call["command"] == [str(machine.lotse), "db", "upgrade"]
    assert "--pipe" in call["options"] and "--pty" not in call["options"]  # no terminal here
    assert {"--wait", "--collect", "--service-type=exec"} <= set(call["options"])
    assert f"--setenv=LOTSE_CONFIG={machine.etc / 'config.toml'}" in call["options"]


def test_it_asks_systemd_for_the_settings_of_the_unit(machine: Machine) -> None:
    assert machine.admin("db", "upgrade").returncode == 0
    properties = _properties(machine.calls()[0]["options"])
    unit = _unit_settings()
    assert {key: properties.get(key) for key in SHARED} == {key: unit[key] for key in SHARED}
    here = str(machine.etc)
    assert properties["LoadCredential"].replace(here, "/etc/lotse") == unit["LoadCredential"]
    assert properties["EnvironmentFile"].replace(here, "/etc/lotse") == unit["EnvironmentFile"]


def test_its_settings_verify_as_unit_settings(machine: Machine, tmp_path: Path) -> None:
    assert machine.admin("db", "upgrade").returncode == 0
    call = machine.calls()[0]
    lines = ["[Service]", "Type=exec"]
    lines += [f"{key}={value}" for key, value in _properties(call["options"]).items()]
    lines += [
        f"Environment={o.removeprefix('--setenv=')}" for o in call["options"] if "setenv" in o
    ]
    lines.append("ExecStart=" + " ".join(call["command"]))
    unit = tmp_path / "lotse-admin-run.service"
    unit.write_text("\n".join(lines) + "\n", encoding="utf-8")
    verify_unit(unit, "lotse-admin's settings were compared with the unit's only")


@pytest.mark.parametrize(
    ("remove", "names"),
    [
        ("server.secret", "no server secret at"),
        ("lotse.env", "no environment file at"),
        ("config.toml", "no configuration at"),
    ],
)
def test_a_missing_file_is_named_before_systemd_is_asked(
    machine: Machine, remove: str, names: str
) -> None:
    (machine.etc / remove).unlink()
    result = machine.admin("counsellor", "list")
    assert result.returncode == 2
    assert result.stderr.startswith(f"lotse-admin: {names} {machine.etc / remove}")
    assert machine.calls() == []


def test_without_a_command_or_a_lotse_it_says_how_to_use_it(machine: Machine) -> None:
    bare = machine.admin()
    assert bare.returncode == 2 and bare.stdout.startswith("usage: sudo ")
    helped = machine.admin("--help")
    assert helped.returncode == 0 and "usage:" in helped.stdout
    missing = machine.admin("counsellor", "list", LOTSE=str(machine.folder / "nowhere"))
    assert missing.returncode == 2 and "no lotse at" in missing.stderr
    assert machine.calls() == []


def test_it_refuses_to_run_without_root(machine: Machine) -> None:
    nobody = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")
    result = machine.admin("counsellor", "list", prefix=nobody)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("lotse-admin: needs root to run as the service's user: sudo ")
    assert machine.calls() == []
