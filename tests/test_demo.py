"""`make demo` (``python -m pqproxy.demo``) runs on embedded defaults and says what it showed."""

from __future__ import annotations

import subprocess
import sys


def test_the_demo_shows_the_pipe_and_the_qkd_story() -> None:
    done = subprocess.run([sys.executable, "-m", "pqproxy.demo"], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "key exchange group                        X25519MLKEM768" in out
    rows = [line for line in out.splitlines() if ", QBER " in line]  # the QKD tables, one row per phase
    assert len(rows) == 7, out
    up, stored, none_left, back = rows[:4]
    assert "up, QBER 1.5%" in up and up.count("keyed, key_ID") == 2
    assert "aborted, QBER 13.6%" in stored and stored.count("keyed, key_ID") == 2
    assert "degraded" in none_left and "refused (qkd_required)" in none_left
    assert "eavesdropper gone: up in" in back and back.count("keyed, key_ID") == 2
    assert "pqproxy_qkd_degraded_total 1.0" in out

    # The network: alice at A, carol at C, through the trusted node B; an eavesdropper on A-B, the reroute.
    through_b, rerouted, again = rows[4:]
    assert "A -> B -> C" in through_b and "B; keyed, key_ID" in through_b
    assert "aborted, QBER 13.6%" in rerouted and "A -> C" in rerouted and "none; keyed, key_ID" in rerouted
    assert "eavesdropper gone" in again and "A -> B -> C" in again and "keyed, key_ID" in again
    assert 'pqproxy_qkd_network_link_disturbances_total{link="A-B"} 1.0' in out
    assert 'pqproxy_qkd_network_trusted_node_keys_total{site="B"} 2.0' in out
