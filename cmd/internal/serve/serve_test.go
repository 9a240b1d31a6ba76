package serve

import (
	"io"
	"log/slog"
	"net/http"
	"testing"
)

func TestHTTPServerIsBounded(t *testing.T) {
	srv := HTTPServer(http.NotFoundHandler(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if srv.ReadHeaderTimeout <= 0 || srv.ReadTimeout <= 0 || srv.WriteTimeout <= 0 || srv.IdleTimeout <= 0 {
		t.Fatalf("unbounded timeouts: %+v", srv)
	}
	if srv.MaxHeaderBytes != MaxHeaderBytes || srv.ErrorLog == nil {
		t.Fatalf("MaxHeaderBytes %d ErrorLog %v", srv.MaxHeaderBytes, srv.ErrorLog)
	}
}
