package raftlog

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// lockFileName is the file in the data dir that a running Node holds an
// exclusive flock on. The stores' own lock is not enough: bbolt (under
// raft-wal's meta DB and raft-boltdb) waits forever for a held lock when
// opened without a timeout, so a second process would hang instead of fail.
const lockFileName = "LOCK"

// dirLock is an exclusive, non-blocking flock on Dir/LOCK. The kernel drops
// it when the process dies, so a kill -9 leaves no stale lock behind.
type dirLock struct {
	f *os.File
}

func lockDir(dir string) (*dirLock, error) {
	path := filepath.Join(dir, lockFileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("raftlog: open lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder := ""
		if b, rerr := os.ReadFile(path); rerr == nil && len(b) > 0 {
			holder = " (held by pid " + string(b) + ")"
		}
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s is locked%s; stop the other process or use another data dir", ErrDirLocked, dir, holder)
		}
		return nil, fmt.Errorf("raftlog: lock %s: %w", path, err)
	}
	// The pid is informational only; the flock is the lock.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())), 0)
	}
	return &dirLock{f: f}, nil
}

func (l *dirLock) release() error {
	// Closing the file drops the flock. The file stays: deleting it would
	// race with another process that has opened it and is about to lock.
	return l.f.Close()
}
