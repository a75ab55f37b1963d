"""The real middleboxes the lab (and the probe's tests) put on a path, as configuration files.

Each SNI router sends the name ``good.test`` to one TLS backend and everything else to a *default*
backend with another certificate, the way SNI routers are deployed: a box that loses the SNI answers
with the wrong certificate, and the probe notices.

- HAProxy 2.6, ``use_backend ... if { req.ssl_sni ... }``: without a ``tcp-request content`` rule it
  decides on whatever bytes it has when the stream starts (``inspect=False``); with the documented
  ``inspect-delay`` + ``req.ssl_hello_type`` rule it waits for the hello, but ``req.ssl_sni`` still reads
  only the first record (``inspect=True``).
- nginx 1.22 stream ``ssl_preread`` with a ``map $ssl_preread_server_name``: reassembles segments and
  records.
- Squid 5.7 (squid-openssl) as a forward proxy with ``ssl_bump peek`` at step 1, then ``splice``.

The functions return the text of a configuration; where the binary is, and how to say it is missing,
is ``find_binary``'s job.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

GOOD_NAME = "good.test"
INSPECT_DELAY_MS = 1500
NGINX_STREAM_MODULE = "/usr/lib/nginx/modules/ngx_stream_module.so"

INSTALL_HINTS = {
    "haproxy": "apt-get install haproxy",
    "nginx": "apt-get install nginx libnginx-mod-stream",
    "squid": "apt-get install squid-openssl",
    "iptables-legacy": "apt-get install iptables",
    "nft": "apt-get install nftables",
    "ip": "apt-get install iproute2",
}


def find_binary(name: str) -> str | None:
    """The path of ``name`` on PATH or in /usr/sbin (root's tools are there, and PATH may lack it)."""
    found = shutil.which(name)
    if found:
        return found
    candidate = f"/usr/sbin/{name}"
    return candidate if os.access(candidate, os.X_OK) else None


def missing_gear(name: str) -> str | None:
    """Why the gear ``name`` cannot run here (None when it can)."""
    binary = find_binary(name)
    if binary is None:
        return f"{name} is not installed ({INSTALL_HINTS.get(name, 'apt-get install ' + name)})"
    if name == "nginx" and not os.path.exists(NGINX_STREAM_MODULE):
        return f"nginx has no stream module ({INSTALL_HINTS['nginx']})"
    if name == "squid":
        import subprocess

        version = subprocess.run([binary, "-v"], capture_output=True, text=True, timeout=10).stdout
        if "--with-openssl" not in version:
            return f"this squid has no ssl_bump (Debian's squid is GnuTLS-built: {INSTALL_HINTS['squid']})"
    return None


def haproxy_sni_router(*, listen: str, good: str, default: str, inspect: bool) -> str:
    rules = ""
    if inspect:
        rules = (f"    tcp-request inspect-delay {INSPECT_DELAY_MS}ms\n"
                 "    tcp-request content accept if { req.ssl_hello_type 1 }\n")
    return f"""global
    maxconn 256
defaults
    mode tcp
    timeout connect 2s
    timeout client 10s
    timeout server 10s
frontend sni_router
    bind {listen}
{rules}    use_backend good if {{ req.ssl_sni -i {GOOD_NAME} }}
    default_backend fallback
backend good
    server good {good}
backend fallback
    server fallback {default}
"""


def nginx_sni_router(*, prefix: Path, listen: str, good: str, default: str) -> str:
    """``prefix`` holds nginx's pid file and logs (``prefix/logs`` must exist)."""
    return f"""load_module {NGINX_STREAM_MODULE};
daemon off;
master_process off;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log info;
events {{ worker_connections 256; }}
stream {{
    map $ssl_preread_server_name $pq_backend {{
        {GOOD_NAME} {good};
        default {default};
    }}
    server {{
        listen {listen};
        ssl_preread on;
        preread_timeout 5s;
        proxy_pass $pq_backend;
    }}
}}
"""


def squid_peek_splice(*, home: Path, listen: str, tls_cert: Path) -> str:
    """Squid refuses to run as root and becomes its ``proxy`` user: ``home`` (logs, pid) and ``tls_cert``
    (certificate and key in one PEM, needed by ``ssl-bump`` even when it only peeks) must be reachable by it."""
    return f"""http_port {listen} ssl-bump tls-cert={tls_cert} generate-host-certificates=off
visible_hostname pqproxy-lab
dns_nameservers 127.0.0.1
pid_filename {home}/squid.pid
cache_log {home}/cache.log
logformat peek %>a %rm %ru sni=%ssl::>sni bump=%ssl::bump_mode
access_log stdio:{home}/access.log peek
cache deny all
coredump_dir {home}
pinger_enable off
shutdown_lifetime 1 seconds
acl step1 at_step SslBump1
ssl_bump peek step1
ssl_bump splice all
acl CONNECT method CONNECT
http_access allow CONNECT
http_access deny all
"""
