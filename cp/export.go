package cp

import (
	"fmt"
	"net/http"
	"time"

	"github.com/julienschmidt/httprouter"

	"github.com/fluxforge/fluxforge/cp/logfile"
)

// exportSinceMax bounds ?since: a longer one is surely a mistake.
const exportSinceMax = 10 * 365 * 24 * time.Hour

// logExport is GET /admin/log/export[?since=30m]: the log export file
// (cp/logfile) of this cp: the newest snapshot at or before the first
// entry appended in the last `since` (wall clock; no since: the oldest
// point the data dir still holds) and every entry after it up to the index
// applied when the request came. Snapshots and log are read under
// raftlog.Node.Record's consistent view: if a snapshot compacts the log
// meanwhile, the read starts over; after 3 such races the answer is 503
// (retry). Nothing is written before the record is read, so a failure is a
// JSON error; a failure while streaming cuts the body, and the file then
// lacks its end line, which every reader refuses.
func (s *Server) logExport(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	var since time.Time
	now := time.Now() // raft stamps entries with the wall clock
	if v := r.URL.Query().Get("since"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 || d > exportSinceMax {
			writeError(w, http.StatusBadRequest, "invalid", fmt.Sprintf("since %q must be a positive duration such as 30m or 24h", v))
			return
		}
		since = now.Add(-d)
	}
	rec, err := s.node.Record(since)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "unavailable", err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Content-Disposition", `attachment; filename="fluxforge-log-export.jsonl"`)
	if err := logfile.Write(w, logfile.NewHeader(now, since), rec); err != nil {
		s.log.Warn("log.export.failed", "err", err)
		panic(http.ErrAbortHandler) // cut the stream: the reader sees no end line
	}
}
