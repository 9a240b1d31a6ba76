module github.com/fluxforge/fluxforge

go 1.26.0
