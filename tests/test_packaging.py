"""pqproxy as users install it: a wheel (`pip install .`, the README's CI recipe), in a fresh venv, away from this
checkout. The probe must carry what it needs (the suites, and the captures its replay profiles send): before,
`pqproxy probe HOST --profile replay:chromium` from such an install failed with `.../site-packages/captures/
chromium.pcap: no such capture file`."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.sidecar_kit import HOST, Backend, Sidecar, server_args

REPO = Path(__file__).resolve().parents[1]
CAPTURES = sorted(p.name for p in (REPO / "captures").glob("*.pcap"))


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel of this checkout, installed (with its dependencies) in a new venv: its bin directory."""
    work = tmp_path_factory.mktemp("wheel")
    source = _copy_of_the_checkout(work / "source")  # a build writes build/ and *.egg-info: not in the checkout
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(work / "dist"), str(source)],
                   check=True, capture_output=True, timeout=300)
    (wheel,) = (work / "dist").glob("pqproxy-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    for capture in CAPTURES:
        assert f"pqproxy/probe/pcaps/{capture}" in names, capture
    assert "pqproxy/probe/pcaps/manifest.json" in names and "pqproxy/probe/suites/default.toml" in names
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(wheel)], check=True, capture_output=True,
                   timeout=600)
    return venv / "bin"


def _copy_of_the_checkout(target: Path) -> Path:
    """The files git tracks or would track (links as links), as they are in the working tree."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, check=True,
                            capture_output=True, timeout=60).stdout.decode().split("\0")
    for name in filter(None, listed):
        source, copy = REPO / name, target / name
        if not source.exists() and not source.is_symlink():
            continue  # deleted in the working tree
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, copy, follow_symlinks=False)
    return target


def test_the_installed_package_is_not_this_checkout(installed: Path, tmp_path: Path) -> None:
    where = subprocess.run([str(installed / "python"), "-c",
                            "import pqproxy.probe.profiles as p; print(p.CAPTURES_DIR)"],
                           check=True, capture_output=True, text=True, cwd=tmp_path, timeout=60).stdout.strip()
    assert where.startswith(str(installed.parent)) and "site-packages" in where, where
    assert not where.startswith(str(REPO))


@pytest.mark.parametrize("capture", [name.removesuffix(".pcap") for name in CAPTURES])
def test_the_installed_probe_replays_every_capture(installed: Path, tmp_path: Path,
                                                  capture: str) -> None:
    from pqproxy.certs import write_dev_pki

    files = write_dev_pki(tmp_path / "pki", alg="ecdsa", names=("localhost",))
    backend = Backend()
    server = Sidecar("server", server_args(files, backend.address), admin=False)
    try:
        done = subprocess.run(
            [str(installed / "pqproxy"), "probe", f"{HOST}:{server.port}", "--sni", "localhost", "--suite", "quick",
             "--profile", f"replay:{capture}", "--no-raw", "--json", str(tmp_path / "report.json")],
            capture_output=True, text=True, cwd=tmp_path, timeout=120)
    finally:
        server.stop()
        backend.close()
    assert done.returncode == 0, done.stdout + done.stderr
    (target,) = json.loads((tmp_path / "report.json").read_text())["targets"]
    replayed = [r for r in target["results"] if r["spec"]["profile"] == f"replay:{capture}"]
    assert replayed and all(r["verdict"] == "pass" for r in replayed), replayed
    assert all(r["outcome"]["kind"] == "server_hello" for r in replayed)
