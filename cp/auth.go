package cp

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/fluxforge/fluxforge/core"
	fnet "github.com/fluxforge/fluxforge/net"
)

// Role is what a named token may do: RoleAdmin ⊃ RoleSubmit ⊃ RoleRead for
// operators, and RoleAgent for the agent protocol.
type Role string

// Roles of a tokens file line.
const (
	RoleAdmin  Role = "admin"
	RoleSubmit Role = "submit"
	RoleRead   Role = "read"
	RoleAgent  Role = "agent"
)

// Names of the tokens the single-token options stand for: AdminToken is a
// RoleAdmin token named "admin", AgentToken the shared RoleAgent token named
// "agent", which may speak for any agent (unless client certificates name
// the agents, see Options.AgentCertRequired).
const (
	AdminTokenName = "admin"
	AgentTokenName = "agent"
)

// Token is one named token: Name is who holds it (recorded as `by` on what
// it changes), Secret what they send as "Authorization: Bearer <Secret>".
// An agent-role token whose Name is not AgentTokenName is an agent's own:
// it may register, heartbeat and report only as the agent of that id.
type Token struct {
	Name   string
	Role   Role
	Secret string
}

// covers reports whether a token of role r may act where role need is
// required.
func (r Role) covers(need Role) bool {
	switch need {
	case RoleRead:
		return r == RoleAdmin || r == RoleSubmit || r == RoleRead
	case RoleSubmit:
		return r == RoleAdmin || r == RoleSubmit
	case RoleAdmin:
		return r == RoleAdmin
	case RoleAgent:
		return r == RoleAgent
	}
	return false
}

// tokenNameBytesMax bounds a token's name.
const tokenNameBytesMax = 64

// ParseTokens reads a tokens file: one "name role token" a line, fields
// separated by spaces or tabs; blank lines and lines starting with '#' are
// skipped. Names are 1 to 64 of [A-Za-z0-9._@-] (an agent's own token is
// named by its agent id); roles are admin, submit, read and agent; a token
// appears once. An error names file and line.
func ParseTokens(r io.Reader, file string) ([]Token, error) {
	var out []Token
	seen := map[string]int{}
	sc := bufio.NewScanner(r)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 3 {
			return nil, fmt.Errorf("%s:%d: want \"name role token\", got %d fields", file, n, len(f))
		}
		t := Token{Name: f[0], Role: Role(f[1]), Secret: f[2]}
		if !validTokenName(t.Name) {
			return nil, fmt.Errorf("%s:%d: token name %q: must be 1 to %d of [A-Za-z0-9._@-]", file, n, t.Name, tokenNameBytesMax)
		}
		if !slices.Contains([]Role{RoleAdmin, RoleSubmit, RoleRead, RoleAgent}, t.Role) {
			return nil, fmt.Errorf("%s:%d: role %q of %s: must be admin, submit, read or agent", file, n, f[1], t.Name)
		}
		if prev, ok := seen[t.Secret]; ok {
			return nil, fmt.Errorf("%s:%d: the token of %s is the token of line %d: each token must be unique", file, n, t.Name, prev)
		}
		seen[t.Secret] = n
		out = append(out, t)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s:%d: %w", file, n+1, err)
	}
	return out, nil
}

// ReadTokensFile reads and parses the tokens file at path.
func ReadTokensFile(path string) ([]Token, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ParseTokens(f, path)
}

func validTokenName(s string) bool {
	if s == "" || len(s) > tokenNameBytesMax {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '@' || c == '-') {
			return false
		}
	}
	return true
}

// tokenSet is the tokens in force, looked up by the SHA-256 of the secret
// (so the lookup's timing says nothing about the secret's bytes).
type tokenSet struct {
	bySum map[[32]byte]Token
	// operators: some admin, submit or read token exists, so admin routes
	// need an admin token.
	operators bool
	// submitGated: the tokens file names operators, so submit and cancel
	// need a submit token (with only -admin-token they stay open).
	submitGated bool
	// agents: some agent token exists, so the agent protocol needs one.
	agents bool
	// shared is the secret of the shared agent token (named "agent"), the
	// one the cp presents to agents ("" for none).
	shared string
}

// newTokenSet merges the single-token options and the file's tokens.
func newTokenSet(adminToken, agentToken string, file []Token) (*tokenSet, error) {
	ts := &tokenSet{bySum: map[[32]byte]Token{}}
	add := func(t Token) error {
		sum := sha256.Sum256([]byte(t.Secret))
		if prev, ok := ts.bySum[sum]; ok {
			return fmt.Errorf("the token of %s (%s) is also the token of %s (%s): each token must be unique", t.Name, t.Role, prev.Name, prev.Role)
		}
		ts.bySum[sum] = t
		if t.Role == RoleAgent && t.Name == AgentTokenName {
			ts.shared = t.Secret
		}
		if t.Role == RoleAgent {
			ts.agents = true
		} else {
			ts.operators = true
		}
		return nil
	}
	if adminToken != "" {
		if err := add(Token{Name: AdminTokenName, Role: RoleAdmin, Secret: adminToken}); err != nil {
			return nil, err
		}
	}
	if agentToken != "" {
		if err := add(Token{Name: AgentTokenName, Role: RoleAgent, Secret: agentToken}); err != nil {
			return nil, err
		}
	}
	for _, t := range file {
		if t.Secret == "" {
			return nil, fmt.Errorf("token %s has an empty secret", t.Name)
		}
		if err := add(t); err != nil {
			return nil, err
		}
		if t.Role != RoleAgent {
			ts.submitGated = true
		}
	}
	return ts, nil
}

// lookup finds the token r presents: present says an Authorization header
// was sent at all, ok that it is "Bearer <a known token>".
func (ts *tokenSet) lookup(r *http.Request) (t Token, present, ok bool) {
	h := r.Header.Get(fnet.HeaderAuthorization)
	if h == "" {
		return Token{}, false, false
	}
	secret, bearer := strings.CutPrefix(h, "Bearer ")
	if !bearer || secret == "" {
		return Token{}, true, false
	}
	t, ok = ts.bySum[sha256.Sum256([]byte(secret))]
	return t, true, ok
}

// Reasons of flux_auth_refusals_total.
const (
	refusalNoToken      = "no_token"
	refusalUnknownToken = "unknown_token"
	refusalWrongRole    = "wrong_role"
	refusalWrongAgent   = "wrong_agent"
	refusalNoClientCert = "no_client_cert"
)

// authRefusals lists every reason (their series start at 0).
var authRefusals = []string{refusalNoToken, refusalUnknownToken, refusalWrongRole, refusalWrongAgent, refusalNoClientCert}

// authError is a refused request: 401 (no or unknown credentials) or 403
// (known ones that may not do this), with its reason.
type authError struct {
	status int
	reason string
	realm  string
	msg    string
}

func (e *authError) Error() string { return e.msg }

func unauthorized(reason, realm, msg string) *authError {
	return &authError{http.StatusUnauthorized, reason, realm, msg}
}

func forbidden(reason, msg string) *authError {
	return &authError{http.StatusForbidden, reason, "", msg}
}

// writeAuthError answers a refusal of authAgent or authOperator with 401
// or 403 and the JSON error body, and counts it in
// flux_auth_refusals_total{reason}.
func (s *Server) writeAuthError(w http.ResponseWriter, err error) {
	var ae *authError
	if !errors.As(err, &ae) {
		ae = unauthorized(refusalUnknownToken, "fluxforge", err.Error())
	}
	s.metrics.authRefusals.WithLabelValues(ae.reason).Inc()
	if ae.status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="`+ae.realm+`"`)
		writeError(w, ae.status, "unauthorized", ae.msg)
		return
	}
	writeError(w, ae.status, "forbidden", ae.msg)
}

// authAgent is the one check of the agent protocol: every agent route
// (heartbeat, and any other an agent calls) calls it, with id the agent the
// request speaks for ("" before the body is read: credentials only). It
// returns nil when r may speak for id, else an error for writeAuthError.
//
// With Options.AgentCertRequired (the cp's -tls-client-ca), r must come
// with a verified client certificate whose CN or a DNS SAN is id. When any
// agent token exists, r must carry an agent-role token; an agent's own
// token (named by its id) speaks only for that agent, the shared token
// (AgentTokenName) for any agent.
func (s *Server) authAgent(r *http.Request, id core.AgentID) error {
	const realm = "fluxforge-agent"
	if s.opts.AgentCertRequired {
		if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.PeerCertificates) == 0 {
			return unauthorized(refusalNoClientCert, realm, "the agent protocol needs a client certificate issued by the cp's client CA (-tls-client-ca)")
		}
		if id != "" && !certNames(r.TLS.PeerCertificates[0], string(id)) {
			c := r.TLS.PeerCertificates[0]
			return forbidden(refusalWrongAgent, fmt.Sprintf("the client certificate (CN %q, DNS names %q) does not name agent %q", c.Subject.CommonName, c.DNSNames, id))
		}
	}
	ts := s.tokens.Load()
	if !ts.agents {
		return nil
	}
	t, present, ok := ts.lookup(r)
	switch {
	case !present:
		return unauthorized(refusalNoToken, realm, "the agent protocol needs Authorization: Bearer <agent token>")
	case !ok:
		return unauthorized(refusalUnknownToken, realm, "the agent protocol needs Authorization: Bearer <agent token>; this one is not known (revoked, or mistyped)")
	case t.Role != RoleAgent:
		return forbidden(refusalWrongRole, fmt.Sprintf("token %s has role %s; the agent protocol needs an agent token", t.Name, t.Role))
	case id != "" && t.Name != AgentTokenName && t.Name != string(id):
		return forbidden(refusalWrongAgent, fmt.Sprintf("token %s is agent %s's own and may not speak for agent %q", t.Name, t.Name, id))
	}
	return nil
}

// certNames reports whether c's CN or one of its DNS SANs is name.
func certNames(c *x509.Certificate, name string) bool {
	return c.Subject.CommonName == name || slices.Contains(c.DNSNames, name)
}

// authOperator checks r against need (RoleRead, RoleSubmit or RoleAdmin)
// and returns the name of the token presented ("" for none). A route is
// open (any request passes) when no token could be required of it: admin
// routes without operator tokens, submit routes unless the tokens file
// names operators, reads unless Options.RequireReadToken. On an open route
// a known token still names who acted; an unknown one is ignored.
func (s *Server) authOperator(r *http.Request, need Role) (string, error) {
	ts := s.tokens.Load()
	var required bool
	switch need {
	case RoleAdmin:
		required = ts.operators
	case RoleSubmit:
		required = ts.submitGated
	case RoleRead:
		required = s.opts.RequireReadToken
	}
	t, present, ok := ts.lookup(r)
	if !required {
		if ok && t.Role != RoleAgent {
			return t.Name, nil
		}
		return "", nil
	}
	realm := "fluxforge-" + string(need)
	switch {
	case !present:
		return "", unauthorized(refusalNoToken, realm, fmt.Sprintf("this endpoint needs Authorization: Bearer <%s token>", need))
	case !ok:
		return "", unauthorized(refusalUnknownToken, realm, fmt.Sprintf("this endpoint needs Authorization: Bearer <%s token>; this one is not known (revoked, or mistyped)", need))
	case !t.Role.covers(need):
		return "", forbidden(refusalWrongRole, fmt.Sprintf("token %s has role %s; this endpoint needs %s", t.Name, t.Role, need))
	}
	return t.Name, nil
}

// byKey is the context key of the acting token's name.
type byKey struct{}

// byName is the name of the token r was authorized with ("" for none).
func byName(r *http.Request) string {
	s, _ := r.Context().Value(byKey{}).(string)
	return s
}

func withBy(r *http.Request, name string) *http.Request {
	if name == "" {
		return r
	}
	return r.WithContext(context.WithValue(r.Context(), byKey{}, name))
}

// ReloadTokens re-reads Options.TokensFile (what SIGHUP does): a rotated
// or revoked token takes effect for the next request. A file that does not
// parse leaves the tokens in force as they were; the error is logged and
// returned. Without a tokens file it does nothing.
func (s *Server) ReloadTokens() error {
	if s.opts.TokensFile == "" {
		return nil
	}
	ts, err := s.loadTokens()
	if err != nil {
		s.log.Error("tokens file not reloaded: the previous tokens stay in force", "file", s.opts.TokensFile, "error", err.Error())
		return err
	}
	s.tokens.Store(ts)
	s.log.Info("tokens reloaded", "file", s.opts.TokensFile, "tokens", len(ts.bySum))
	return nil
}

// loadTokens builds the token set from the options and the tokens file.
func (s *Server) loadTokens() (*tokenSet, error) {
	var file []Token
	if s.opts.TokensFile != "" {
		var err error
		if file, err = ReadTokensFile(s.opts.TokensFile); err != nil {
			return nil, fmt.Errorf("tokens file: %w", err)
		}
	}
	ts, err := newTokenSet(s.opts.AdminToken, s.opts.AgentToken, file)
	if err != nil {
		return nil, fmt.Errorf("tokens: %w", err)
	}
	if s.opts.RequireReadToken && !ts.operators {
		return nil, errors.New("tokens: a read token is required (-require-read-token) but no admin, submit or read token is configured")
	}
	return ts, nil
}

// TLSHandshakeError counts a failed TLS handshake of the API port in
// flux_tls_handshake_errors_total{reason} (the listener's hook).
func (s *Server) TLSHandshakeError(reason string) {
	s.metrics.tlsHandshake.WithLabelValues(reason).Inc()
}

// SetTLSCertExpiry sets flux_tls_cert_expiry_seconds to the serving
// certificate's NotAfter (at start and on every reload).
func (s *Server) SetTLSCertExpiry(notAfter time.Time) {
	s.metrics.tlsCertExpiry.Set(float64(notAfter.Unix()))
}
