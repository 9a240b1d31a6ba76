// Package serve builds the HTTP servers of the cp and agent commands with
// one set of bounds, so both daemons refuse slow or oversized requests alike.
package serve

import (
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"
)

// Bounds every daemon's server applies.
const (
	ReadHeaderTimeout = 10 * time.Second // slow-header (slowloris) bound
	ReadTimeout       = 30 * time.Second
	WriteTimeout      = 30 * time.Second
	IdleTimeout       = 2 * time.Minute
	MaxHeaderBytes    = 64 << 10 // larger headers get 431
)

// HTTPServer returns a server for h with the bounds above, logging server
// errors (TLS, malformed requests) to logger at WARN. It speaks HTTP/1.1
// and HTTP/2, cleartext (h2c with prior knowledge) included, so an agent's
// long poll and its heartbeats share one connection. A handler that holds
// a request longer (the cp's poll) extends its deadlines with
// http.ResponseController.
func HTTPServer(h http.Handler, logger *slog.Logger) *http.Server {
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetHTTP2(true)
	protos.SetUnencryptedHTTP2(true)
	return &http.Server{
		Protocols:         &protos,
		Handler:           h,
		ReadHeaderTimeout: ReadHeaderTimeout,
		ReadTimeout:       ReadTimeout,
		WriteTimeout:      WriteTimeout,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
}

// Pprof serves Go's net/http/pprof profiles (/debug/pprof/...) on a
// listener of its own at addr, never on a daemon's API port (profiles
// expose the process: bind it to loopback), and logs where. An empty addr
// serves nothing. It returns what stops the server (call it at exit), or
// why addr cannot be listened on (logged too).
func Pprof(addr string, logger *slog.Logger) (stop func(), err error) {
	if addr == "" {
		return func() {}, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		logger.Error("cannot listen", "pprof", addr, "error", err.Error())
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: ReadHeaderTimeout}
	go func() { _ = srv.Serve(ln) }()
	logger.Info("serving profiles", "pprof", ln.Addr().String())
	return func() { _ = srv.Close() }, nil
}
