#!/usr/bin/env bash
# Installs what building ckpt-watch needs, idempotently (DESIGN.md §4): Debian's rustc with the
# precompiled BPF core, LLVM 22 for bpf-linker, and bpf-linker itself. Safe to run again.
set -euo pipefail

APT_PACKAGES=(rustc-web cargo-web libstd-rust-web-dev-bpf llvm-22-dev libpolly-22-dev zlib1g-dev libzstd-dev lsof qemu-system-x86 busybox-static criu iptables iproute2 lz4 zstd)
BPF_LINKER_VERSION=0.13.0

say() { printf '[bootstrap] %s\n' "$*" >&2; }

missing=()
for p in "${APT_PACKAGES[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
	say "installing apt packages: ${missing[*]}"
	sudo_cmd=""
	[ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
	$sudo_cmd apt-get update -q
	DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -q "${missing[@]}"
else
	say "apt packages present"
fi

if command -v bpf-linker >/dev/null && bpf-linker --version 2>/dev/null | grep -q "$BPF_LINKER_VERSION"; then
	say "bpf-linker $BPF_LINKER_VERSION present"
else
	say "installing bpf-linker $BPF_LINKER_VERSION against LLVM 22 (about a minute)"
	LLVM_PREFIX=/usr/lib/llvm-22 LLVM_SYS_221_PREFIX=/usr/lib/llvm-22 \
		cargo install bpf-linker --version "$BPF_LINKER_VERSION" --locked --no-default-features --features llvm-22
fi
