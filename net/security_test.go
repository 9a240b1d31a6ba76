package net

import (
	"go/ast"
	"go/parser"
	"go/token"
	"net/http/httptest"
	"testing"
)

func TestCheckTokenRefusals(t *testing.T) {
	const want = "s3cret-token"
	tests := []struct {
		name   string
		header []string // values of Authorization; none when empty
		ok     bool
	}{
		{"right token", []string{"Bearer " + want}, true},
		{"no header", nil, false},
		{"empty header", []string{""}, false},
		{"empty bearer", []string{"Bearer "}, false},
		{"bearer only", []string{"Bearer"}, false},
		{"wrong token", []string{"Bearer nope"}, false},
		{"prefix of the token", []string{"Bearer s3cret"}, false},
		{"token with a suffix", []string{"Bearer " + want + "x"}, false},
		{"token without Bearer", []string{want}, false},
		{"lower-case scheme", []string{"bearer " + want}, false},
		{"other scheme", []string{"Basic " + want}, false},
		{"two spaces", []string{"Bearer  " + want}, false},
		{"trailing space", []string{"Bearer " + want + " "}, false},
		{"second header ignored", []string{"Bearer nope", "Bearer " + want}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/", nil)
			for _, v := range tc.header {
				r.Header.Add(HeaderAuthorization, v)
			}
			if got := CheckToken(r, want); got != tc.ok {
				t.Fatalf("CheckToken = %v, want %v", got, tc.ok)
			}
		})
	}
	// An empty configured token disables the check (a laptop setup, warned
	// about by the daemons).
	if !CheckToken(httptest.NewRequest("POST", "/", nil), "") {
		t.Fatal("an empty configured token must accept")
	}
}

// TestCheckTokenConstantTime pins the comparison to crypto/subtle: the token
// check's time must not depend on how much of a guess is right. Timing is
// too noisy to test directly, so the test reads the source.
func TestCheckTokenConstantTime(t *testing.T) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "http.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var fn *ast.FuncDecl
	for _, d := range f.Decls {
		if d, ok := d.(*ast.FuncDecl); ok && d.Name.Name == "CheckToken" {
			fn = d
		}
	}
	if fn == nil {
		t.Fatal("CheckToken not found in http.go")
	}
	subtle, stringCompare := false, false
	ast.Inspect(fn.Body, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.SelectorExpr:
			if x, ok := n.X.(*ast.Ident); ok && x.Name == "subtle" && n.Sel.Name == "ConstantTimeCompare" {
				subtle = true
			}
		case *ast.BinaryExpr:
			// got == want (or !=) on the token itself would leak timing.
			if n.Op == token.EQL || n.Op == token.NEQ {
				for _, side := range []ast.Expr{n.X, n.Y} {
					if id, ok := side.(*ast.Ident); ok && id.Name == "got" {
						stringCompare = true
					}
				}
			}
		}
		return true
	})
	if !subtle || stringCompare {
		t.Fatalf("CheckToken must compare with subtle.ConstantTimeCompare only (subtle=%v, plain compare of got=%v)", subtle, stringCompare)
	}
}
