#!/usr/bin/env bash
# THE test command (README: `bash ci/test.sh`), and what CI runs through .ci/run.
#
# On a fresh Debian 12 machine, as root, with only PyPI and Debian's mirror reachable:
#   1. installs the Debian packages the tests need (apt-get update at most once a day),
#   2. builds a venv (.venv, reused) and installs flowbatch from a built wheel, NOT
#      editable, so the tests exercise what users get (a file missing from the wheel fails),
#   3. runs the engine scripts (SLURM kept up, the ssh test user and key, the podman image)
#      and exports what the engine tests read,
#   4. runs ruff, ruff format --check, mypy --strict, lint-imports and pytest.
# Every step runs even after an earlier one failed, so one run reports every failure;
# the exit status is non-zero if any step failed. pytest's "no tests ran" (5) is a failure.
#
# Knobs: PYTHON (interpreter for the venv, default python3, must be >= 3.11),
# VENV (default .venv), PYTEST_ARGS (extra pytest arguments, e.g. "-k store"),
# ENGINES (default "slurm ssh podman"; ENGINES= skips them all, for a quick local run:
# slurm.sh restarts the SLURM daemons, which disturbs anyone using them at the time).
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2
ROOT=$PWD
VENV=${VENV:-$ROOT/.venv}
PYTHON=${PYTHON:-python3}
export DEBIAN_FRONTEND=noninteractive
# CI (CI=true in CI) reaches pytest unchanged through the environment: engine tests fail,
# not skip, when their engine is missing and CI=true (tests/engine_helpers.py).

FAILED=()
START=$SECONDS
section() { printf '\n==== %s  [+%ss]\n' "$*" "$((SECONDS - START))"; }
fail() { FAILED+=("$1"); printf '!!!! FAILED: %s\n' "$1"; }
# step NAME CMD...: run a step, record a failure, never stop the script.
step() {
  local name=$1; shift
  section "$name"
  "$@" </dev/null || fail "$name (exit $?)"
}

# ---------------------------------------------------------------- Debian packages
# graphviz + fonts: `flowbatch graph` renders with dot; chromium: the HTML report's
# browser test. The engine scripts install their own packages.
APT_PACKAGES=(graphviz fonts-dejavu-core chromium ca-certificates)

apt_lists_fresh() {
  [ -n "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mmin -1440 2>/dev/null | head -1)" ]
}
debian_packages() {
  local missing=() pkg
  for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' \
      || missing+=("$pkg")
  done
  # Once per run at most, and only when the lists are older than a day; the engine
  # scripts check the same age, so they do not update again.
  apt_lists_fresh || apt-get update -qq || echo "apt-get update failed: trying the old lists"
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/tmp/flowbatch-ci-apt.log 2>&1 \
      || { tail -n 30 /tmp/flowbatch-ci-apt.log; return 1; }
  fi
  echo "ok: ${APT_PACKAGES[*]}"
}

# ---------------------------------------------------------------- venv + package
python_ok() {
  "$1" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null
}
make_venv() {
  if ! python_ok "$PYTHON"; then
    # Debian's own python3 ships venv/ensurepip separately.
    apt-get install -y -qq --no-install-recommends python3-venv >/dev/null 2>&1 || true
    python_ok "$PYTHON" || { echo "$PYTHON is missing, older than 3.11 or has no venv"; return 1; }
  fi
  if ! python_ok "$VENV/bin/python"; then
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV" || return 1
    # Keeps the venv out of `git status` without touching the shared .gitignore.
    echo '*' >"$VENV/.gitignore"
  fi
  "$VENV/bin/python" --version
}
install_package() {
  local pip=("$VENV/bin/python" -m pip --disable-pip-version-check --no-input)
  # Uninstall first: pip may keep an installed flowbatch of the same version instead of
  # rebuilding it from the current source.
  "${pip[@]}" uninstall -q -y flowbatch >/dev/null 2>&1 || true
  # The dependencies and test tools first, from pyproject.toml, so that ruff, mypy and
  # the rest still run when building flowbatch itself fails. pytest-timeout is CI's
  # own: a hung test fails alone instead of eating CI's whole time budget.
  local listing deps=()
  listing=$("$VENV/bin/python" - "$ROOT/pyproject.toml" <<'PY'
import sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb"))["project"]
print("\n".join(project["dependencies"] + project["optional-dependencies"]["test"]))
PY
  ) || return 1
  mapfile -t deps <<<"$listing"
  "${pip[@]}" install -q "${deps[@]}" pytest-timeout || return 1
  # Not editable (-e): the tests must import the wheel's files.
  "${pip[@]}" install -q "${ROOT}[test]" || return 1
  (cd / && "$VENV/bin/python" -c 'import flowbatch; print("installed:", flowbatch.__file__)')
}

# ---------------------------------------------------------------- engines
run_engine() {
  local name=$1 script=$ROOT/ci/engines/$1.sh
  if [ ! -f "$script" ]; then
    echo "ci/engines/$name.sh does not exist yet: its tests will fail under CI=true"
    return 1
  fi
  bash "$script"
}
engine() {
  section "engine: $1"
  if run_engine "$1" </dev/null; then
    return 0
  fi
  fail "engine $1"
  return 1
}

# ---------------------------------------------------------------- checks
pytest_run() {
  local rc args=(
    -p no:cacheprovider     # no .pytest_cache written into the checkout
    # One module that fails to import must not hide every other test's result; the run
    # still fails (exit 1) because of it.
    --continue-on-collection-errors
    --timeout=600           # per test; pytest-timeout
    --durations=15          # the slowest tests, to keep an eye on the budget
    -o faulthandler_timeout=300
  )
  # The venv's pytest script, run from the repo root: the checkout's root is not on
  # sys.path (unlike `python -m pytest`), so `import flowbatch` finds the installed
  # wheel; tests/test_exports.py checks that under CI=true.
  # The outer timeout is a backstop for a hang pytest-timeout cannot see (a thread that
  # keeps the interpreter from exiting): CI has 90 minutes in all.
  # shellcheck disable=SC2086  # PYTEST_ARGS is a list of words on purpose
  timeout --kill-after=60 2400 "$VENV/bin/pytest" "${args[@]}" ${PYTEST_ARGS:-}
  rc=$?
  case $rc in
    5) echo "pytest collected no tests: that is a failure" ;;
    124 | 137) echo "pytest did not finish within 40 minutes" ;;
  esac
  return "$rc"
}
validate_examples() {
  shopt -s nullglob
  local flows=("$ROOT"/pipelines/*.flow) f rc=0
  "$VENV/bin/flowbatch" --version || return 1
  for f in "${flows[@]}"; do
    "$VENV/bin/flowbatch" validate "$f" || { echo "does not validate: ${f#"$ROOT"/}"; rc=1; }
  done
  echo "${#flows[@]} example pipeline(s) checked"
  return "$rc"
}

step "Debian packages" debian_packages
step "venv ($VENV)" make_venv
if python_ok "$VENV/bin/python"; then
  step "pip install .[test] (wheel, not editable)" install_package
fi
# The checks need the tools; they still run when flowbatch itself failed to install,
# so that a packaging failure does not hide the other findings.
venv_ok=1
for tool in ruff mypy lint-imports pytest; do [ -x "$VENV/bin/$tool" ] || venv_ok=0; done

for name in ${ENGINES-slurm ssh podman}; do
  engine "$name" || continue
  if [ "$name" = slurm ]; then
    partition=$(sinfo -h -o '%P' 2>/dev/null | head -1 | tr -d '*')
    export FLOWBATCH_TEST_SLURM_PARTITION=${partition:-debug}
    echo "FLOWBATCH_TEST_SLURM_PARTITION=$FLOWBATCH_TEST_SLURM_PARTITION"
  fi
  # ssh.sh installs openssh and creates the user fbtest and its client key; the test
  # fixture starts its own sshd per session, so nothing is exported for it.
done

if [ "$venv_ok" -eq 1 ]; then
  PATH=$VENV/bin:$PATH
  step "ruff check" ruff check .
  step "ruff format --check" ruff format --check .
  step "mypy (strict)" mypy
  step "lint-imports" lint-imports
  step "flowbatch validate pipelines/*.flow" validate_examples
  step "pytest (CI=${CI:-unset})" pytest_run
else
  fail "checks skipped: the test tools are not installed in $VENV"
fi

section "summary"
echo "took $((SECONDS - START)) s"
if [ ${#FAILED[@]} -gt 0 ]; then
  printf 'FAILED: %s\n' "${FAILED[@]}"
  exit 1
fi
echo "all steps passed"
