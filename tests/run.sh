#!/usr/bin/env bash
# The whole test suite on a fresh Debian 12 machine (run as root, as CI does):
# installs the Debian packages the tests use, from the one list in
# installer/system_packages.py (`python3 -m installer.system_packages list` shows it),
# makes .venv with airlock and its test tools, starts a private container engine,
# runs ruff and pytest, and stops the engine it started (by PID).
set -euo pipefail
cd "$(dirname "$0")/.."

# The suite runs everything airlock does (the whole demo, so the lab, the code-server build
# and the browser; the npm mirror) and its own tools. The system python3, before .venv exists.
python3 -m installer.system_packages install \
  venv reviewer mirror npm source-mirrors engine lab codeserver-build llama-build browser tests

if [[ ! -x .venv/bin/python ]]; then
  echo "== creating .venv"
  python3 -m venv .venv
fi
echo "== installing airlock and test tools into .venv"
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]'

# The lab, its images and the bundles the tests build take room under /tmp: about 25 GiB at
# the peak of a whole run (measured on cb49997; this script prints the figure at its end).
# Say so now rather than fail half-way.
free_mib() { df --output=avail -B1M /tmp | tail -1 | tr -d ' '; }
need_gib=${AIRLOCK_TEST_DISK_GIB:-30}
free_gib=$(( $(free_mib) / 1024 ))
if (( free_gib < need_gib )); then
  echo "only ${free_gib} GiB free under /tmp; the suite needs about ${need_gib} GiB" \
       "(the lab, its images and the test bundles): free some room and run it again" >&2
  exit 1
fi
echo "== ${free_gib} GiB free under /tmp (about ${need_gib} GiB needed)"
# The lowest free room seen during the run, said at the end (a bounded sampler, stopped by PID).
low_file=$(mktemp /tmp/airlock-test-disk.XXXXXX)
free_mib >"$low_file"
( for _ in $(seq 1440); do
    sleep 5
    now=$(free_mib)
    (( now < $(cat "$low_file") )) && echo "$now" >"$low_file"
  done ) &
sampler_pid=$!

# A private engine for the tests that use one (docker-daemon source); never the host's.
engine_dir=$(mktemp -d /tmp/airlock-test-engine.XXXXXX)
dockerd --data-root "$engine_dir/data" --exec-root "$engine_dir/exec" \
  -H "unix://$engine_dir/docker.sock" --pidfile "$engine_dir/pid" \
  --iptables=false --bridge=none >"$engine_dir/log" 2>&1 &
engine_pid=$!
cleanup() {
  kill "$engine_pid" 2>/dev/null && wait "$engine_pid" 2>/dev/null
  rm -rf "$engine_dir"
  kill "$sampler_pid" 2>/dev/null
  echo "== disk: ${free_gib} GiB free under /tmp at the start, $(( $(cat "$low_file") / 1024 )) GiB at the lowest"
  rm -f "$low_file"
}
trap cleanup EXIT
export DOCKER_HOST="unix://$engine_dir/docker.sock"
for _ in $(seq 60); do
  docker version >/dev/null 2>&1 && break
  kill -0 "$engine_pid" 2>/dev/null || { cat "$engine_dir/log"; echo "dockerd died" >&2; exit 1; }
  sleep 1
done
docker version --format 'engine {{.Server.Version}} at '"$DOCKER_HOST" \
  || { tail -20 "$engine_dir/log"; echo "the container engine did not start" >&2; exit 1; }

# Tests that need the engine, the registry or skopeo fail (never skip) when it is missing.
export AIRLOCK_REQUIRE_ALL=1

echo "== ruff"
.venv/bin/ruff check installer tests benchmarks roles molecule
echo "== yamllint, ansible-lint (production profile)"
.venv/bin/yamllint -s roles playbooks inventories .yamllint
PATH="$PWD/.venv/bin:$PATH" .venv/bin/ansible-lint --offline --profile production roles playbooks molecule
# The shared lab's modules first, one at a time (one lab, timing-sensitive checks); then the
# rest in two workers, one per core (each module whole in one worker; test_lab.py's and
# molecule's own labs take turns: tests/conftest.py's own_lab_turn). Both always run; the
# suite fails if either does.
# (pytest's 5, "nothing collected", is no failure when the arguments chose one kind only.)
# The workers' folders are short (a gpg agent's socket path has at most 107 bytes).
echo "== pytest: the shared lab's modules"
lab_rc=0
.venv/bin/python -m pytest -m lab --durations=25 "$@" || lab_rc=$?
echo "== pytest: the rest, two at a time"
rest_rc=0
.venv/bin/python -m pytest -m "not lab" -n 2 --dist loadfile --basetemp=/tmp/airlock-tests \
  --durations=15 "$@" || rest_rc=$?
if (( lab_rc == 5 && rest_rc == 5 )); then
  exit 5
fi
(( lab_rc == 5 )) && lab_rc=0
(( rest_rc == 5 )) && rest_rc=0
(( lab_rc == 0 && rest_rc == 0 ))
