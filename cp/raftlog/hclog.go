package raftlog

import (
	"context"
	"io"
	"log"
	"log/slog"
	"strings"

	"github.com/hashicorp/go-hclog"
)

// quietMessages are raft messages logged at WARN or INFO that are routine for
// a single-node cluster: every start of a node runs an election after one
// heartbeat timeout, so these would print on each start. They go to DEBUG.
var quietMessages = map[string]bool{
	"heartbeat timeout reached, starting election": true,
}

// hclogAdapter is an hclog.Logger that writes to a *slog.Logger. raft and its
// stores log through hclog; the daemons log through slog, so raft's lines
// land in the same stream with the same level filter.
//
// Levels map as: TRACE, DEBUG and INFO to slog DEBUG (raft's INFO lines are
// state transitions and snapshot progress, chatty for an operator at info);
// WARN to WARN; ERROR to ERROR. The component name ("raft", "raft.wal") goes
// to the "component" attribute.
type hclogAdapter struct {
	logger  *slog.Logger
	name    string
	implied []any
}

var _ hclog.Logger = (*hclogAdapter)(nil)

func newHclogAdapter(logger *slog.Logger, name string) *hclogAdapter {
	return &hclogAdapter{logger: logger, name: name}
}

func slogLevel(level hclog.Level, msg string) slog.Level {
	switch {
	case level >= hclog.Error:
		return slog.LevelError
	case level == hclog.Warn && !quietMessages[msg]:
		return slog.LevelWarn
	default:
		return slog.LevelDebug
	}
}

func (a *hclogAdapter) Log(level hclog.Level, msg string, args ...any) {
	if level == hclog.Off {
		return
	}
	lvl := slogLevel(level, msg)
	ctx := context.Background()
	if !a.logger.Enabled(ctx, lvl) {
		return
	}
	attrs := make([]any, 0, 2+len(a.implied)+len(args))
	if a.name != "" {
		attrs = append(attrs, "component", a.name)
	}
	attrs = append(attrs, a.implied...)
	attrs = append(attrs, args...)
	a.logger.Log(ctx, lvl, msg, attrs...)
}

func (a *hclogAdapter) Trace(msg string, args ...any) { a.Log(hclog.Trace, msg, args...) }
func (a *hclogAdapter) Debug(msg string, args ...any) { a.Log(hclog.Debug, msg, args...) }
func (a *hclogAdapter) Info(msg string, args ...any)  { a.Log(hclog.Info, msg, args...) }
func (a *hclogAdapter) Warn(msg string, args ...any)  { a.Log(hclog.Warn, msg, args...) }
func (a *hclogAdapter) Error(msg string, args ...any) { a.Log(hclog.Error, msg, args...) }

func (a *hclogAdapter) IsTrace() bool { return a.logger.Enabled(context.Background(), slog.LevelDebug) }
func (a *hclogAdapter) IsDebug() bool { return a.logger.Enabled(context.Background(), slog.LevelDebug) }
func (a *hclogAdapter) IsInfo() bool  { return a.logger.Enabled(context.Background(), slog.LevelDebug) }
func (a *hclogAdapter) IsWarn() bool  { return a.logger.Enabled(context.Background(), slog.LevelWarn) }
func (a *hclogAdapter) IsError() bool { return a.logger.Enabled(context.Background(), slog.LevelError) }

func (a *hclogAdapter) ImpliedArgs() []any { return a.implied }

func (a *hclogAdapter) With(args ...any) hclog.Logger {
	c := *a
	c.implied = append(append([]any(nil), a.implied...), args...)
	return &c
}

func (a *hclogAdapter) Name() string { return a.name }

func (a *hclogAdapter) Named(name string) hclog.Logger {
	c := *a
	if c.name != "" {
		c.name += "." + name
	} else {
		c.name = name
	}
	return &c
}

func (a *hclogAdapter) ResetNamed(name string) hclog.Logger {
	c := *a
	c.name = name
	return &c
}

// SetLevel is ignored: the slog handler's level is the only filter.
func (a *hclogAdapter) SetLevel(hclog.Level) {}

// GetLevel reports the most verbose hclog level the slog handler lets through.
func (a *hclogAdapter) GetLevel() hclog.Level {
	ctx := context.Background()
	switch {
	case a.logger.Enabled(ctx, slog.LevelDebug):
		return hclog.Trace
	case a.logger.Enabled(ctx, slog.LevelWarn):
		return hclog.Warn
	case a.logger.Enabled(ctx, slog.LevelError):
		return hclog.Error
	default:
		return hclog.Off
	}
}

func (a *hclogAdapter) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(a.StandardWriter(opts), "", 0)
}

func (a *hclogAdapter) StandardWriter(opts *hclog.StandardLoggerOptions) io.Writer {
	level := hclog.Info
	if opts != nil && opts.ForceLevel != hclog.NoLevel {
		level = opts.ForceLevel
	}
	return &stdWriter{a: a, level: level}
}

// stdWriter turns lines of a standard library logger into log records.
type stdWriter struct {
	a     *hclogAdapter
	level hclog.Level
}

func (w *stdWriter) Write(p []byte) (int, error) {
	w.a.Log(w.level, strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
