package raftlog

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
)

// storeName names the durable log store in logs and benchmark output.
const storeName = "raft-wal"

// openDiskStores opens the durable raft log and stable store under dir/wal:
// hashicorp/raft-wal (segment files plus a small bbolt meta DB), which
// fsyncs every append. raft-wal recovers a torn tail of the newest segment
// on open by dropping the incomplete records.
func openDiskStores(dir string, logger hclog.Logger) (raft.LogStore, raft.StableStore, io.Closer, error) {
	walDir := filepath.Join(dir, "wal")
	if err := os.MkdirAll(walDir, 0o700); err != nil {
		return nil, nil, nil, fmt.Errorf("raftlog: create %s: %w", walDir, err)
	}
	// raft-wal's Close does not close its bbolt meta DB, so the DB's flock
	// would outlive Close and a reopen in the same process would wait on it
	// forever. We own the meta DB and close it after the WAL.
	meta := &metadb.BoltMetaDB{}
	w, err := wal.Open(walDir, wal.WithLogger(logger.Named("wal")), wal.WithMetaStore(meta))
	if err != nil {
		_ = meta.Close()
		return nil, nil, nil, fmt.Errorf("raftlog: open log store %s: %w", walDir, err)
	}
	return w, w, closerFunc(func() error { return errors.Join(w.Close(), meta.Close()) }), nil
}

type closerFunc func() error

func (f closerFunc) Close() error { return f() }
