"""The pytest plugin as a user meets it: a test file of theirs, run by pytest, asserting on their endpoints.

``pq_probe`` comes from the ``pytest11`` entry point (installed with the package), not from a conftest.
A clean ``pqproxy server`` passes ``assert_no_breakage`` and ``assert_pq_ready``; HAProxy routing on
``req.ssl_sni`` without a content rule fails ``assert_no_breakage`` with the diagnosis in words.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pqproxy.certs import write_dev_pki
from tests.middleboxes import haproxy_sni_router
from tests.sidecar_kit import Backend, Sidecar, server_args

pytestmark = pytest.mark.interop

USER_TESTS = '''
import os

def test_gateway_is_clean(pq_probe):
    result = pq_probe(os.environ["GOOD_TARGET"], sni="localhost", suite="ci")
    result.assert_no_breakage()
    result.assert_pq_ready()
    assert result.diagnosis_ids == []

def test_router_is_clean(pq_probe):
    result = pq_probe(os.environ["BROKEN_TARGET"], sni="good.test", suite="quick")
    result.assert_no_breakage()
'''


def test_plugin_in_a_users_suite(tmp_path: Path) -> None:
    paths = write_dev_pki(tmp_path / "pki", alg="ecdsa", names=("localhost",))
    upstream = Backend("echo")
    server = Sidecar("server", server_args(paths, upstream.address), admin=False)
    user = tmp_path / "user"
    user.mkdir()
    (user / "test_endpoints.py").write_text(USER_TESTS)
    try:
        with haproxy_sni_router(tmp_path / "box", inspect=False) as box:
            env = {**os.environ, "GOOD_TARGET": f"127.0.0.1:{server.port}", "BROKEN_TARGET": f"127.0.0.1:{box.port}"}
            env.pop("PYTEST_ADDOPTS", None)
            done = subprocess.run(
                [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--pq-probe-report",
                 str(tmp_path / "reports"), "test_endpoints.py"],
                cwd=user, env=env, capture_output=True, text=True, timeout=240,
            )
    finally:
        server.stop(check=False)
        upstream.close()
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "1 failed, 1 passed" in out, out
    assert "test_router_is_clean" in out and "split-segments" in out, out
    assert "post-quantum ClientHellos break on this path" in out, out
    assert "Traceback" not in out
    reports = sorted(p.name for p in (tmp_path / "reports").glob("*.json"))
    assert len(reports) == 2 and any("test_gateway_is_clean" in r for r in reports), reports
