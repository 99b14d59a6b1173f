#!/usr/bin/env bash
# Installs tiergate into the project's interpreter without changing anything the project
# installed: every package already there is held at its version (a pip constraint), so pip only
# adds what is missing, and refuses rather than upgrade or downgrade the project's pinned pytest.
# tiergate itself is left out of the constraints: it is replaced.
#
#   install-tiergate.sh PYTHON SOURCE
#
# PYTHON: the interpreter's path. SOURCE: what to install (the action's checkout; a test passes
# a wheel). pip's own options (PIP_NO_INDEX, PIP_FIND_LINKS, ...) come from the environment.
# On a refusal it prints one `::error` line: what conflicts and what to do. Called by action.yml;
# tests/test_install_constrained.py runs it for real against a throwaway venv.
set -euo pipefail

python="$1"
source="$2"
fail() { echo "::error title=tiergate::$1"; exit 2; }

work="$(mktemp -d "${RUNNER_TEMP:-/tmp}/tiergate-install-XXXXXX")"
trap 'rm -rf -- "$work"' EXIT  # also when pip refuses
"$python" -m pip list --disable-pip-version-check --format=freeze --exclude tiergate \
  > "$work/constraints.txt" \
  || fail "cannot list the packages of $python (input python): is pip installed in it?"

# Not --quiet: pip says which requirements conflict only at its normal level of output. Its
# output is shown as it comes and kept, to name the conflict in the error line.
code=0  # pip's, with pipefail: tee succeeds
"$python" -m pip install --disable-pip-version-check --constraint "$work/constraints.txt" \
  "$source" 2>&1 | tee "$work/pip.log" || code=$?
(( code == 0 )) && exit 0

# pip's resolver, on a conflict with a constraint:
#     tiergate 0.1.0 depends on pytest>=8
#     The user requested (constraint) pytest==7.4.0
held="$(sed -n 's/^ *The user requested (constraint) //p' "$work/pip.log" | sort -u)"
wanted="$(sed -n 's/^ *\([^ ]\+ [^ ]\+ depends on .*\)$/\1/p' "$work/pip.log" | sort -u)"
python_wanted="$(sed -n "s/.*requires a different Python: \(.*\)$/\1/p" "$work/pip.log" | head -n 1)"
if [[ -n "$held" ]]; then
  fail "tiergate's requirements conflict with the project's packages, which the action never \
changes: $(paste -sd ';' <<< "$wanted" | sed 's/;/; /g'), and the project has \
$(paste -sd ',' <<< "$held" | sed 's/,/, /g') (in $python). Pin a version that satisfies both \
in the project's requirements, or use a tiergate release that allows the project's version"
elif [[ -n "$python_wanted" ]]; then
  fail "tiergate needs another Python than $python ($python_wanted): set up Python 3.11 or newer"
fi
fail "pip could not install tiergate into $python: see its message above"
