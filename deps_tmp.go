package main
import (
 _ "github.com/valyala/fasthttp"
 _ "github.com/oschwald/geoip2-golang/v2"
 _ "github.com/oschwald/maxminddb-golang/v2"
 _ "github.com/mssola/useragent"
 _ "go.etcd.io/bbolt"
 _ "github.com/nats-io/nats.go"
 _ "github.com/nats-io/nats.go/jetstream"
 _ "github.com/nats-io/nats-server/v2/server"
 _ "github.com/prometheus/client_golang/prometheus"
 _ "github.com/prometheus/client_golang/prometheus/promhttp"
 _ "github.com/maxmind/mmdbwriter"
 _ "sigs.k8s.io/yaml"
)
func main(){}
