#!/usr/bin/env bash
# Checks the Prometheus alert rules: installs promtool if it is missing
# (Debian package "prometheus"), then runs `promtool check rules` and
# `promtool test rules`. Idempotent; exits non-zero on the first failure.
#
# With -go it also runs the Go tests that need promtool: `promtool check
# metrics` on a real scrape of the cp, the dashboard's metric names, and the
# simulator-generated rule tests (go test ./deploy/ ./sim/export/).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v promtool >/dev/null 2>&1; then
	echo "deploy/check.sh: promtool not found, installing the Debian package prometheus" >&2
	sudo=""
	if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends prometheus >/dev/null
fi
promtool --version 2>&1 | head -n 1

promtool check rules deploy/prometheus/alerts.yml
promtool test rules deploy/prometheus/alerts_test.yml

if [ "${1:-}" = "-go" ]; then
	pkgs=(./deploy/)
	if [ -d sim/export ]; then pkgs+=(./sim/export/); fi
	go test -count=1 "${pkgs[@]}"
fi
