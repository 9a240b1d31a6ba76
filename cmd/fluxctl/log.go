package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/fluxforge/fluxforge/cp/client"
)

// log export: the cp's log export file (cp/logfile) to stdout, the backup
// and the input of `go run ./cmd/sim -replay FILE` and `cp -restore FILE`.
func (c *cli) log(args []string) error {
	if len(args) == 0 || args[0] != "export" {
		return usagef("want: log export [-since DURATION] > FILE")
	}
	fs := flag.NewFlagSet("log export", flag.ContinueOnError)
	since := fs.Duration("since", 0, "start at the newest snapshot at or before this long ago (0: the oldest point the cp holds)")
	if _, err := c.parse(fs, args[1:], 0); err != nil {
		return err
	}
	if *since < 0 {
		return usagef("-since %v must not be negative", *since)
	}
	u := strings.TrimRight(c.cpURL, "/") + "/admin/log/export"
	if *since > 0 {
		u += "?since=" + url.QueryEscape(since.String())
	}
	req, err := http.NewRequestWithContext(c.ctx(), http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	// The export streams a whole log: no overall timeout, only the
	// transport's own.
	hc := &http.Client{Transport: c.http.Transport}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		e := &client.Error{Status: resp.StatusCode}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if json.Unmarshal(b, e) != nil {
			e.Message = strings.TrimSpace(string(b))
		}
		return e
	}
	start := time.Now()
	n, err := io.Copy(c.stdout, resp.Body)
	if err != nil {
		return fmt.Errorf("export cut after %d bytes: %w (the file is incomplete; a reader refuses it)", n, err)
	}
	fmt.Fprintf(c.stderr, "exported %d bytes in %v\n", n, time.Since(start).Round(time.Millisecond))
	return nil
}
