// Package serve builds the HTTP servers of the cp and agent commands with
// one set of bounds, so both daemons refuse slow or oversized requests alike.
package serve

import (
	"log/slog"
	"net/http"
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
// errors (TLS, malformed requests) to logger at WARN.
func HTTPServer(h http.Handler, logger *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: ReadHeaderTimeout,
		ReadTimeout:       ReadTimeout,
		WriteTimeout:      WriteTimeout,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
}
