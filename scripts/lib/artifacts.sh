# shellcheck shell=bash
# Builds the module and the daemon with cargo and sets module_path and daemon_path to what cargo
# reports (so they follow CARGO_TARGET_DIR and the profile). Sourced by scripts/run and scripts/test.
#
# Usage: build_module_and_daemon [cargo build flags, e.g. --release]
build_module_and_daemon() {
    local artifacts
    artifacts=$(cargo build "$@" -p qsess-module -p qsess-syncd --message-format=json-render-diagnostics |
        python3 -c '
import json, sys
for line in sys.stdin:
    message = json.loads(line)
    if message.get("reason") != "compiler-artifact":
        continue
    kinds = message["target"]["kind"]
    if "cdylib" in kinds:
        print("module", next(name for name in message["filenames"] if name.endswith(".so")))
    elif "bin" in kinds and message["target"]["name"] == "qsess-syncd":
        print("daemon", message["executable"])
')
    module_path=$(awk '$1 == "module" { print $2 }' <<<"$artifacts")
    daemon_path=$(awk '$1 == "daemon" { print $2 }' <<<"$artifacts")
    if [[ -z $module_path || -z $daemon_path ]]; then
        echo "cargo did not report the module library and the daemon binary" >&2
        return 1
    fi
}
