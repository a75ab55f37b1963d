#!/bin/sh
# Prints the interpreter `make setup` builds .venv with (override: make PY=... setup).
#
# The distribution's own CPython comes first: Debian's (like Ubuntu's and Fedora's) is built with PGO and
# LTO and its executable links libpython statically, where pyenv's default build (this machine's first
# python3 on PATH) has neither and calls libpython through the PLT. pqproxy is CPU-bound in CPython on
# every connection, and the difference is measured: pure-Python code ~15% faster, the sidecar's server CPU
# per hybrid connection 0.92-0.95x (benchmarks/README.md, "The interpreter"). Any CPython >= 3.11 that can make a
# venv will do; the first that can is taken.
for candidate in /usr/bin/python3 python3; do
    if "$candidate" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        command -v "$candidate"
        exit 0
    fi
done
echo python3
