# Sourced by the GPU launch scripts (training, evaluation): print the hydra overrides when asked, and refuse to start
# with the whole list of what is missing instead of failing inside Ray. Each script collects problems in `missing`.
#
#   print_overrides_if_asked "${OVERRIDES[@]}" "$@"    # PRINT_OVERRIDES=1: print them, one per line, and exit 0
#   require_files "eval file" "$VAL_FILES" "run the data_prep converter, or set VAL_FILES"
#   stop_if_missing "$(basename "$0")" "See: bash $0 --help"

missing=()

print_overrides_if_asked() {
  if [ "${PRINT_OVERRIDES:-0}" = "1" ]; then
    printf '%s\n' "$@"
    exit 0
  fi
}

# Every entry of a comma-separated list of files must exist; the optional hint says how to get one.
require_files() {
  local what=$1 list=$2 hint=${3:-} f files
  IFS=, read -r -a files <<<"$list"
  for f in "${files[@]}"; do
    [ -z "$f" ] || [ -f "$f" ] || missing+=("$what not found: $f${hint:+ ($hint)}")
  done
}

stop_if_missing() {
  local script=$1 footer=${2:-}
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "$script: cannot start:" >&2
    printf '  - %s\n' "${missing[@]}" >&2
    [ -z "$footer" ] || echo "$footer" >&2
    exit 2
  fi
}
