module github.com/clickedge/clickedge/bench

go 1.26.8

replace github.com/clickedge/clickedge => ../

require (
	github.com/HdrHistogram/hdrhistogram-go v1.4.0
	github.com/clickedge/clickedge v0.0.0-00010101000000-000000000000
	github.com/maxmind/mmdbwriter v1.2.0
	github.com/nats-io/nats.go v1.55.0
	github.com/valyala/fasthttp v1.78.0
)

require (
	github.com/klauspost/compress v1.20.3 // indirect
	github.com/molecule-man/go-brrr v1.3.1 // indirect
	github.com/nats-io/nkeys v0.4.16 // indirect
	github.com/nats-io/nuid v1.0.1 // indirect
	github.com/oschwald/geoip2-golang/v2 v2.5.0 // indirect
	github.com/oschwald/maxminddb-golang/v2 v2.8.0 // indirect
	github.com/valyala/bytebufferpool v1.0.0 // indirect
	go4.org/netipx v0.0.0-20231129151722-fdeea329fbba // indirect
	golang.org/x/crypto v0.58.0 // indirect
	golang.org/x/sys v0.49.0 // indirect
)
