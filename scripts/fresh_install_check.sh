#!/usr/bin/env bash
# A newcomer's first run, which .ci/run does before the suite: a fresh virtual environment with the
# package installed without extras (torch pinned as in the Makefile), the admin commands, then
# `make run` and the README's quickstart against it. An import that only an extra satisfies, a log
# line on stdout, a server that never gets ready or leaves files behind: each fails here.
#
#   scripts/fresh_install_check.sh        (about 2 minutes, most of it pip)
set -euo pipefail
cd "$(dirname "$0")/.."

work=$(mktemp -d "${TMPDIR:-/tmp}/mlapi-fresh-XXXXXX")
venv=$work/venv
mkdir "$work/tmp"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
url=http://127.0.0.1:$port
server=

stop_server() {
  if [ -n "$server" ] && kill -0 "$server" 2>/dev/null; then
    [ -s "$work/gunicorn.pid" ] && kill -TERM "$(cat "$work/gunicorn.pid")" 2>/dev/null
    wait "$server"
  fi
}
trap 'status=$?; stop_server || true; rm -rf "$work"; exit $status' EXIT

step() { echo "fresh install: $*"; }
fail() {
  echo "fresh install: FAILED: $*" >&2
  [ -f "$work/server.log" ] && tail -n 40 "$work/server.log" >&2
  exit 1
}

# Nothing of the caller's configuration: what a newcomer has. The database and temporary files go
# to the work folder so that a developer's own instance is untouched.
for name in $(env | grep -oE '^(MLAPI_[A-Z0-9_]+|PROMETHEUS_MULTIPROC_DIR)' | grep -v '^MLAPI_TEST_' || true); do
  unset "$name"
done
export MLAPI_DATABASE_URL="sqlite:///$work/mlapi.db" MLAPI_BIND="127.0.0.1:$port" TMPDIR="$work/tmp"

step "make install into a fresh venv (no extras)"
started=$SECONDS
make --no-print-directory install VENV="$venv"
step "installed in $((SECONDS - started)) s"
if "$venv/bin/python" -c 'import pytest' 2>/dev/null; then
  fail "pytest is importable: the venv is not the package without extras"
fi

step "the admin commands"
"$venv/bin/mlapi" --help >/dev/null || fail "mlapi --help"
version=$("$venv/bin/mlapi" --version)
[[ $version =~ ^mlapi\ [0-9]+\.[0-9]+ ]] || fail "mlapi --version printed '$version'"
"$venv/bin/mlapi" db upgrade >/dev/null || fail "mlapi db upgrade"
"$venv/bin/mlapi" models list | grep -q '^sentiment' || fail "mlapi models list shows no sentiment model"

step "make run (serving on $url)"
started=$SECONDS
GUNICORN_CMD_ARGS="--pid $work/gunicorn.pid" make --no-print-directory run VENV="$venv" >"$work/server.log" 2>&1 &
server=$!
# Answers as soon as a worker runs, before its models are loaded.
curl --silent --show-error --fail --max-time 5 --retry 60 --retry-delay 1 --retry-connrefused \
  "$url/health" >/dev/null || fail "no /health answer"
step "/health answered $((SECONDS - started)) s after make run"
curl --silent --show-error --fail --max-time 1 "$url/health" >/dev/null || fail "/health took over a second"
curl --silent --show-error --fail --max-time 5 --retry 120 --retry-delay 1 --retry-all-errors \
  "$url/ready" >/dev/null || fail "/ready never answered 200"
step "/ready 200 $((SECONDS - started)) s after make run"

step "the README's quickstart"
token=$(curl --silent --fail -d username=demo_user -d password=demo_password "$url/v1/token") \
  || fail "the demo user cannot log in"
[[ $token == *'"access_token"'* ]] || fail "no access token in $token"
key=$("$venv/bin/mlapi" keys create demo_user --label quickstart) || fail "mlapi keys create"
[[ $key =~ ^mlapi_[A-Za-z0-9_-]+$ ]] || fail "mlapi keys create printed more than the key: '$key'"
answer=$(curl --silent --fail -H "X-API-Key: $key" -H 'Content-Type: application/json' \
  -d '{"text": "I love this phone, the battery lasts for days."}' "$url/v1/predict") || fail "/v1/predict"
[[ $answer == *'"result": "positive"'* || $answer == *'"result":"positive"'* ]] || fail "predicted $answer"
curl --silent --fail -H "X-API-Key: $key" -H 'Content-Type: application/json' \
  -d '{"input": ["A man is eating food."]}' "$url/v1/embeddings" >/dev/null || fail "/v1/embeddings"
MLAPI_API_KEY=$key "$venv/bin/mlapi" predict "I love it" --url "$url" | grep -q '"result"' \
  || fail "mlapi predict (the shipped client)"

step "shutdown"
kill -TERM "$(cat "$work/gunicorn.pid")"
wait "$server" || fail "make run exited with $?"
server=
leftovers=$(find "$work/tmp" -maxdepth 1 -name 'mlapi-metrics-*')
[ -z "$leftovers" ] || fail "shutdown left $leftovers"
step "passed"
