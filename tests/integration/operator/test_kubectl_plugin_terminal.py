"""The live bar in a real terminal: `kubectl lifeboat … --wait` inside tmux, read back with
`tmux capture-pane` as a person would see it."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.integration.operator.conftest import Cluster, OperatorControl, SqliteShop
from tests.integration.operator.test_kubectl_plugin import completed_backup, plugin_env

WIDTH, HEIGHT = 180, 40


@dataclass
class Tmux:
    """One private tmux server (its own socket), one session."""

    socket: str
    session: str = "plugin"

    def tmux(self, *args: str) -> str:
        run = subprocess.run(
            ["tmux", "-L", self.socket, "-f", os.devnull, *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return run.stdout

    def start(self, command: str, env: dict[str, str]) -> None:
        """Run `command` in a new WIDTHxHEIGHT terminal with only `env` (no COLUMNS inherited
        from whoever started tmux: the terminal's own size counts); the shell then waits on the
        terminal's input, so the screen stays readable after the command ended."""
        exports = " ".join(f"{name}={shlex.quote(value)}" for name, value in sorted(env.items()))
        script = f"{command}; echo EXIT=$?; read _"
        self.tmux(
            "new-session",
            "-d",
            "-s",
            self.session,
            "-x",
            str(WIDTH),
            "-y",
            str(HEIGHT),
            f"env -i {exports} sh -c {shlex.quote(script)}",
        )

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", self.session)


@pytest.fixture
def tmux() -> Iterator[Tmux]:
    """tmux, installed with apt-get when missing; the test is skipped only if that fails."""
    if shutil.which("tmux") is None:
        try:
            subprocess.run(
                ["apt-get", "install", "-y", "-q", "tmux"],
                capture_output=True,
                timeout=300,
                check=True,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            pytest.skip(f"tmux is not installed and apt-get could not install it: {exc}")
        if shutil.which("tmux") is None:
            pytest.skip("tmux is not installed and apt-get could not install it")
    terminal = Tmux(socket=f"lifeboat-test-{uuid.uuid4().hex[:8]}")
    try:
        yield terminal
    finally:
        subprocess.run(
            ["tmux", "-L", terminal.socket, "kill-server"], capture_output=True, timeout=30
        )


def test_backup_create_wait_draws_a_live_bar_and_ends_with_the_result(
    cluster: Cluster, lifeboat_operator: OperatorControl, sqlite_shop: SqliteShop, tmux: Tmux
) -> None:
    completed_backup(cluster, sqlite_shop)
    env = plugin_env(TERM="xterm-256color")
    command = shlex.join(
        [
            "kubectl",
            "lifeboat",
            "--kubeconfig",
            str(cluster.kubeconfig),
            "backup",
            "create",
            "shop-tty",
            "--from",
            "backup/shop",
            "--wait",
        ]
    )

    tmux.start(command, {name: env[name] for name in ("PATH", "HOME", "TERM") if name in env})

    def finished() -> str | None:
        text = tmux.screen()
        return text if "EXIT=" in text else None

    screen = cluster.wait_for(finished, timeout=60, message="the plugin to end in the terminal")

    lines = [line.rstrip() for line in screen.splitlines() if line.strip()]
    assert "EXIT=0" in lines, screen
    status = cluster.status("backups", "shop-tty")
    # The live view redrew in place: one header and one bar, no stream of plain lines.
    headers = [line for line in lines if line.split()[:2] == ["backup/shop-tty", "Completed"]]
    assert len(headers) == 1, screen
    assert headers[0].split() == ["backup/shop-tty", "Completed", "done"], screen
    bars = [line for line in lines if "━" in line]
    assert len(bars) == 1, screen
    assert "100.0%" in bars[0]
    assert bars[0].endswith("ETA 00:00")  # the whole line of numbers, unwrapped
    assert (
        f"{status['progress']['itemsTotal']}/{status['progress']['itemsTotal']} tables" in bars[0]
    )
    assert not any(line.startswith("backup/shop-tty:") for line in lines), screen  # plain mode
    result = [line for line in lines if line.startswith("backup/shop-tty completed")]
    assert result, screen
    assert status["artifact"]["uri"][:60] in screen.replace("\n", "")
