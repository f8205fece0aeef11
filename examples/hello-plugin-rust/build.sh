#!/usr/bin/env bash
# Build the Rust example plugin and install it into a Toru plugins directory.
#
#   ./build.sh [PLUGINS_DIR]
#
# PLUGINS_DIR defaults to $TORU_PLUGINS_DIR, then to <repo>/plugins. Installs
# PLUGINS_DIR/hello-plugin-rust.binary and PLUGINS_DIR/hello-plugin-rust/bundle.js.
#
# Where the crates come from (TORU_CARGO_DEBIAN_REGISTRY):
#   unset/auto  crates.io as usual; but when crates.io cannot be reached and Debian's packaged
#               crates are installed (/usr/share/cargo/registry), use those instead
#   1           always use Debian's packaged crates (offline)
#   0           always use crates.io (cargo's own configuration, untouched)
# Debian's crates: apt-get install librust-serde-dev librust-serde-derive-dev librust-serde-json-dev
# The replacement is passed to this one cargo run with --config; ~/.cargo is never modified.
#
# Exit status: 0 installed; 3 the dependencies cannot be obtained (no crates.io, no Debian
# crates); 1 anything else (a compile error is a 1).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
dest="${1:-${TORU_PLUGINS_DIR:-$repo/plugins}}"
debian_registry="${TORU_CARGO_DEBIAN_REGISTRY_DIR:-/usr/share/cargo/registry}"
plugin_id="hello-plugin-rust"

say() { printf 'build.sh: %s\n' "$*" >&2; }

if ! command -v cargo >/dev/null; then
    say "cargo not found; install Rust (https://rustup.rs) or: apt-get install cargo"
    exit 3
fi

crates_io_reachable() {
    # Only the question "can cargo download?", answered within a few seconds.
    if command -v curl >/dev/null; then
        curl --silent --fail --max-time 5 --output /dev/null https://index.crates.io/config.json
    else
        timeout 5 bash -c ': </dev/tcp/index.crates.io/443' 2>/dev/null
    fi
}

use_debian=0
case "${TORU_CARGO_DEBIAN_REGISTRY:-auto}" in
    1 | yes | true) use_debian=1 ;;
    0 | no | false) use_debian=0 ;;
    auto | "")
        if [[ -d "$debian_registry" ]] && ! crates_io_reachable; then
            say "crates.io is unreachable; using Debian's packaged crates in $debian_registry"
            use_debian=1
        fi
        ;;
    *)
        say "TORU_CARGO_DEBIAN_REGISTRY must be 1, 0 or auto, not '$TORU_CARGO_DEBIAN_REGISTRY'"
        exit 1
        ;;
esac

cargo_args=(--manifest-path "$here/Cargo.toml")
if ((use_debian)); then
    if [[ ! -d "$debian_registry" ]]; then
        say "no Debian crates in $debian_registry; apt-get install librust-serde-dev librust-serde-derive-dev librust-serde-json-dev"
        exit 3
    fi
    cargo_args+=(
        --config 'source.crates-io.replace-with="debian"'
        --config "source.debian.directory=\"$debian_registry\""
    )
fi

# Resolve and fetch first, so that "no crates" (exit 3) is told apart from a compile error.
# With Debian's crates the resolution must not reuse a lock made against crates.io.
if ((use_debian)); then
    rm -f "$here/Cargo.lock"
fi
fetch_args=()
((use_debian)) && fetch_args+=(--offline)
if ! cargo fetch "${fetch_args[@]}" "${cargo_args[@]}"; then
    say "cannot obtain the crates (serde, serde_json); see README.md, 'Building offline'"
    exit 3
fi

started=$SECONDS
# After the fetch everything is local, whichever registry it came from.
cargo build --release --offline "${cargo_args[@]}"
say "built in $((SECONDS - started)) s"

# Wherever cargo put it (CARGO_TARGET_DIR or build.target-dir may move it from ./target).
target_dir="$(cargo metadata --format-version 1 --no-deps --offline "${cargo_args[@]}" |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
mkdir -p "$dest/$plugin_id"
install -m 0755 "$target_dir/release/$plugin_id" "$dest/$plugin_id.binary"
install -m 0644 "$here/bundle.js" "$dest/$plugin_id/bundle.js"
say "installed $dest/$plugin_id.binary and $dest/$plugin_id/bundle.js"
