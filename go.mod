module github.com/fluxforge/fluxforge

go 1.26.0

require (
	github.com/benbjohnson/clock v1.3.5 // indirect
	github.com/julienschmidt/httprouter v1.3.0 // indirect
	github.com/prometheus/client_golang v1.25.0 // indirect
	go.uber.org/goleak v1.3.0 // indirect
)
