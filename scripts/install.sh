#!/usr/bin/env bash
# Create (or update) the project's virtual environment in .venv. Idempotent:
# a second run with nothing changed installs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.requirements.sha256
want=$(cat requirements.txt pyproject.toml scripts/install.sh | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "environment .venv is up to date"
  exit 0
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -r requirements.txt 2> >(grep -v "is ignored: it is neither" >&2)
# PyRadiomics 3.0.1 builds from source and imports numpy at build time without declaring it.
.venv/bin/python -m pip install --quiet --no-build-isolation pyradiomics==3.0.1
.venv/bin/python -m pip install --quiet --no-deps -e .
# MathJax served from the book itself (hospital networks are often offline).
if command -v npm >/dev/null 2>&1; then
  if [ ! -f book/_assets/mathjax/tex-chtml.js ]; then
    tmp=$(mktemp -d)
    (cd "$tmp" && npm install --silent --no-audit --no-fund mathjax@3 >/dev/null)
    mkdir -p book/_assets/mathjax
    cp -r "$tmp"/node_modules/mathjax/es5/. book/_assets/mathjax/
    rm -rf "$tmp"
  fi
else
  echo "warning: npm not found; the rendered book will load MathJax from its CDN" >&2
fi
.venv/bin/python -m ipykernel install --sys-prefix --name python3 >/dev/null
echo "$want" > "$stamp"
echo "environment .venv ready"
