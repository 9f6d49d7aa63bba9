#!/usr/bin/env bash
# SimCLR Lab: the two commands of the README.
#
#   ./lab.sh serve   set up (first time only), start a background worker if none is alive, and
#                    open the dashboard on http://localhost:8501
#   ./lab.sh test    set up (first time only), including Chromium and PostgreSQL, and run the tests
#
# Set-up is idempotent: a virtual environment in .venv with the project installed in editable
# mode, re-installed only when requirements.txt or pyproject.toml changes.
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)
VENV="$ROOT/.venv"
PY="$VENV/bin/python"

setup_python() {
    if [ ! -x "$PY" ]; then
        python3 -m venv "$VENV"
    fi
    local want have
    want=$(cat requirements.txt pyproject.toml | sha256sum | cut -d' ' -f1)
    have=$(cat "$VENV/.requirements.sha256" 2>/dev/null || true)
    if [ "$want" != "$have" ]; then
        "$PY" -m pip install --quiet --upgrade pip
        "$PY" -m pip install --quiet -r requirements.txt
        # The project itself, editable: db/, engine/ and dashboard/ import from anywhere.
        "$PY" -m pip install --quiet --no-deps -e .
        echo "$want" > "$VENV/.requirements.sha256"
    fi
}

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi; }

setup_system_packages() {
    # Debian's Chromium for the browser tests, PostgreSQL for the database tests.
    local missing=()
    [ -x /usr/bin/chromium ] || missing+=(chromium)
    command -v pg_ctlcluster >/dev/null || missing+=(postgresql)
    if [ ${#missing[@]} -gt 0 ]; then
        echo "installing ${missing[*]} (Debian packages)"
        as_root apt-get update -qq && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null \
            || echo "warning: could not install ${missing[*]}; tests that need them will fail in CI and skip elsewhere"
    fi
}

start_postgres() {
    # A local server on 127.0.0.1 with a throw-away role and database for the tests.
    command -v pg_ctlcluster >/dev/null || return 0
    local version
    version=$(ls /usr/lib/postgresql | sort -n | tail -1)
    if ! pg_lsclusters -h | grep -q "^$version main"; then
        as_root pg_createcluster "$version" main >/dev/null || return 0
    fi
    if ! pg_lsclusters -h | grep -q "^$version main .* online"; then
        as_root pg_ctlcluster "$version" main start || return 0
    fi
    as_root runuser -u postgres -- psql -q -c "DO \$\$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname='simclr')
        THEN CREATE ROLE simclr LOGIN SUPERUSER PASSWORD 'simclr'; END IF; END \$\$;" >/dev/null || return 0
    as_root runuser -u postgres -- psql -q -tc "SELECT 1 FROM pg_database WHERE datname='simclr_test'" | grep -q 1 \
        || as_root runuser -u postgres -- createdb -O simclr simclr_test
    local port
    port=$(pg_lsclusters -h | awk -v v="$version" '$1==v && $2=="main" {print $3}')
    export SIMCLR_TEST_PG="postgresql+psycopg://simclr:simclr@127.0.0.1:${port}/simclr_test"
    echo "PostgreSQL for tests: $SIMCLR_TEST_PG"
}

case "${1:-}" in
    serve)
        shift
        setup_python
        # The worker first, in the background and in its own session: queued runs start without a
        # page being opened, and stopping the dashboard (Ctrl-C) does not stop the runs. It prints
        # its pid, its log and how to stop it. SIMCLR_NO_LOCAL_WORKER=1: workers run elsewhere.
        case "${SIMCLR_NO_LOCAL_WORKER:-}" in
            ""|0|false|no) "$PY" -m engine worker --detach || echo "warning: no background worker; the dashboard will try again" ;;
        esac
        # dashboard/__main__.py: localhost by default, no other address without a password,
        # and Streamlit's allowed hosts set against DNS rebinding.
        exec "$PY" -m dashboard "$@"
        ;;
    test)
        shift
        setup_python
        setup_system_packages
        start_postgres
        set +e
        "$PY" -m pytest "$@"
        rc=$?
        set -e
        if [ "$rc" = 5 ]; then echo "no tests were collected"; fi
        exit "$rc"
        ;;
    *)
        echo "usage: ./lab.sh serve | ./lab.sh test [pytest args]" >&2
        exit 2
        ;;
esac
