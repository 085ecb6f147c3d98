# shellcheck shell=bash
# Shared helpers for basalt's shell scripts (sourced, not run).
# The caller sets BASALT_LOG (a file) and BASALT_TAG (a short name for messages).

basalt_now() { date +%s.%N; }

# basalt_elapsed START -> "12.3" (seconds since START, one decimal)
basalt_elapsed() { awk -v s="$1" -v e="$(basalt_now)" 'BEGIN { printf "%.1f", e - s }'; }

basalt_die() {
  echo "${BASALT_TAG:-basalt}: ERROR: $*" >&2
  exit 1
}

# basalt_step LABEL CMD... : runs CMD with its output appended to $BASALT_LOG and
# prints one line with the time it took. On failure prints the end of the log and
# returns CMD's status (so `set -e` callers stop there). CMD may be a function;
# note that bash turns `set -e` off inside it when basalt_step itself is called
# in a condition (`if basalt_step ...`, `basalt_step ... && ...`, `! ...`).
basalt_step() {
  local label=$1 start rc=0 old_traps
  shift
  start=$(basalt_now)
  echo "=== $(date -u +%FT%TZ) $label: $*" >>"$BASALT_LOG"
  # Run CMD as a background job and wait for it: a function called on the left of
  # `||` would run with `set -e` ignored, a background job keeps the caller's
  # `set -e`. (So CMD runs in a subshell: it cannot set the caller's variables.)
  # `set -m` gives the job its own process group, so that an interrupt of the
  # script can stop CMD with all its children.
  set -m
  "$@" >>"$BASALT_LOG" 2>&1 </dev/null &
  _basalt_step_pid=$!
  set +m
  old_traps=$(trap -p INT TERM)
  trap 'kill -TERM -- "-$_basalt_step_pid" 2>/dev/null; wait "$_basalt_step_pid" || true; exit 130' INT TERM
  wait "$_basalt_step_pid" || rc=$?
  trap - INT TERM
  eval "$old_traps"
  if [ "$rc" -eq 0 ]; then
    printf '%s: %-28s ok   %6s s\n' "${BASALT_TAG:-basalt}" "$label" "$(basalt_elapsed "$start")"
  else
    printf '%s: %-28s FAILED (exit %s) after %s s; end of %s:\n' "${BASALT_TAG:-basalt}" \
      "$label" "$rc" "$(basalt_elapsed "$start")" "$BASALT_LOG" >&2
    tail -n 25 "$BASALT_LOG" | sed 's/^/    /' >&2
  fi
  return "$rc"
}

basalt_require_root() {
  [ "$(id -u)" -eq 0 ] || basalt_die "must run as root (it installs packages / builds device nodes)"
}
