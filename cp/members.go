package cp

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// MemberInfo is what one cp of a cluster publishes through the log when it
// starts: where its API and its raft transport are. Every node learns the
// others' API URLs from it, to forward writes to the leader and to tell
// agents where the leader is.
type MemberInfo struct {
	ID       string `json:"id"`
	APIURL   string `json:"api_url"`
	RaftAddr string `json:"raft_addr,omitempty"`
}

func (m MemberInfo) validate() error {
	if m.ID == "" || len(m.ID) > 128 || strings.ContainsAny(m.ID, " \t\n,=") {
		return fmt.Errorf("member id %q must be 1 to 128 characters without spaces, commas or '='", m.ID)
	}
	return checkAPIURL(m.APIURL)
}

// checkAPIURL accepts an absolute http(s) URL with a host and no path
// beyond "/".
func checkAPIURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || strings.Trim(u.Path, "/") != "" || u.RawQuery != "" {
		return fmt.Errorf("API URL %q must be http(s)://host:port", s)
	}
	return nil
}

// setMember records m in members (sorted by id), replacing m.ID's entry.
func setMember(members []MemberInfo, m MemberInfo) []MemberInfo {
	i, found := slices.BinarySearchFunc(members, m.ID, func(a MemberInfo, id string) int { return strings.Compare(a.ID, id) })
	if found {
		out := slices.Clone(members)
		out[i] = m
		return out
	}
	return slices.Insert(slices.Clone(members), i, m)
}

// Snapshot container. A cp that never published members writes the core's
// export alone, as before clusters; with members it writes
//
//	"FFCPSNAP\n" | uvarint len(export) | export | JSON members
//
// and Restore reads either.
const cpSnapshotMagic = "FFCPSNAP\n"

func encodeSnapshot(export []byte, members []MemberInfo) ([]byte, error) {
	if len(members) == 0 {
		return export, nil
	}
	js, err := json.Marshal(members)
	if err != nil {
		return nil, fmt.Errorf("cp: encode members: %w", err)
	}
	b := make([]byte, 0, len(cpSnapshotMagic)+binary.MaxVarintLen64+len(export)+len(js))
	b = append(b, cpSnapshotMagic...)
	b = binary.AppendUvarint(b, uint64(len(export)))
	b = append(b, export...)
	return append(b, js...), nil
}

func decodeSnapshot(data []byte) (export []byte, members []MemberInfo, err error) {
	rest, ok := bytes.CutPrefix(data, []byte(cpSnapshotMagic))
	if !ok {
		return data, nil, nil
	}
	n, k := binary.Uvarint(rest)
	if k <= 0 || n > uint64(len(rest)-k) {
		return nil, nil, fmt.Errorf("cp: snapshot container is cut short")
	}
	export, rest = rest[k:k+int(n)], rest[k+int(n):]
	if err := json.Unmarshal(rest, &members); err != nil {
		return nil, nil, fmt.Errorf("cp: snapshot members: %w", err)
	}
	return export, members, nil
}
