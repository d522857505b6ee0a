#!/usr/bin/env bash
# Installs what building ckpt-watch needs, idempotently (DESIGN.md §4): Debian's rustc with the
# precompiled BPF core, LLVM 22 for bpf-linker, and bpf-linker itself. Safe to run again.
set -euo pipefail

# dpkg-dev: dpkg-shlibdeps (and binutils' strip) for `./x package`; systemd: systemd-analyze
# reads the packaged unit (tests/tests/packaging.rs).
APT_PACKAGES=(rustc-web cargo-web libstd-rust-web-dev-bpf llvm-22-dev libpolly-22-dev zlib1g-dev libzstd-dev lsof qemu-system-x86 busybox-static criu iptables iproute2 lz4 zstd dpkg-dev systemd)
BPF_LINKER_VERSION=0.13.0

say() { printf '[bootstrap] %s\n' "$*" >&2; }

# The container oracles: podman driving runc on this host (tests/tests/containers.rs), runc in
# the kernel matrix's guests; rootful, on overlayfs.
# Without recommends: buildah, fuse-overlayfs, slirp4netns, dbus-user-session are not needed
# as root, and fuse-overlayfs would not be what the oracle's containers ran on.
CONTAINER_PACKAGES=(podman runc conmon uidmap netavark)

sudo_cmd=""
[ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
updated=""
# apt_install [APT-GET OPTION...] -- PACKAGE...: installs those not installed yet.
apt_install() {
	local opts=()
	while [ "$1" != "--" ]; do opts+=("$1"); shift; done
	shift
	local missing=()
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
	done
	if ((${#missing[@]})); then
		say "installing apt packages: ${missing[*]}"
		[ -n "$updated" ] || { $sudo_cmd apt-get update -q; updated=1; }
		DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -q "${opts[@]}" "${missing[@]}"
	else
		say "apt packages present: $*"
	fi
}
apt_install -- "${APT_PACKAGES[@]}"
apt_install --no-install-recommends -- "${CONTAINER_PACKAGES[@]}"

if command -v bpf-linker >/dev/null && bpf-linker --version 2>/dev/null | grep -q "$BPF_LINKER_VERSION"; then
	say "bpf-linker $BPF_LINKER_VERSION present"
else
	say "installing bpf-linker $BPF_LINKER_VERSION against LLVM 22 (about a minute)"
	LLVM_PREFIX=/usr/lib/llvm-22 LLVM_SYS_221_PREFIX=/usr/lib/llvm-22 \
		cargo install bpf-linker --version "$BPF_LINKER_VERSION" --locked --no-default-features --features llvm-22
fi
