#!/usr/bin/env bash
# Measures BenchmarkPropose (and the torn-tail behaviour) with raft-boltdb/v2
# v2.3.1 instead of raft-wal. raft-boltdb/v2 v2.3.1 does not build with raft
# v1.8.0, so this runs in a scratch copy of the module with raft v1.7.3; the
# repository's go.mod is not touched.
#
#   bash cp/raftlog/testdata/bench-boltdb.sh [BENCHTIME [COUNT]]
set -euo pipefail
root=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
git -C "$root" ls-files -z | (cd "$root" && xargs -0 cp --parents -t "$scratch")
cd "$scratch"
rm cp/raftlog/store_wal.go cp/raftlog/store_wal_test.go
cp cp/raftlog/testdata/boltdb/store_bolt.go.in cp/raftlog/store_bolt.go
cp cp/raftlog/testdata/boltdb/store_bolt_test.go.in cp/raftlog/store_bolt_test.go
go mod edit -droprequire github.com/hashicorp/raft-wal
# raft v1.8.0 pulled go-metrics v0.7.0, which lacks the compat package v1.7.3 imports.
go get github.com/hashicorp/raft@v1.7.3 github.com/hashicorp/raft-boltdb/v2@v2.3.1 github.com/hashicorp/go-metrics@v0.5.4 go.etcd.io/bbolt
go mod tidy
go test -count=1 -run 'TornLogTailBolt' -v ./cp/raftlog/
go test -run '^$' -bench Propose -benchtime "${1:-2000x}" -count "${2:-3}" ./cp/raftlog/
