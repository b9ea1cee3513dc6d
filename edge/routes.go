package edge

import (
	"bytes"
	"strings"

	"github.com/valyala/fasthttp"
)

// Params holds the values of a route pattern's ":name" segments.
type Params map[string]string

// route is one endpoint of a dialect: a method, a path pattern whose
// segments starting with ':' capture one path segment, a bounded metric
// label, and the handler.
type route struct {
	Method  string
	Pattern string
	Name    string
	Handler func(s *Server, ctx *fasthttp.RequestCtx, p Params)
}

// dialectRoutes collects every dialect's routes; each dialect file adds its
// own from an init function, so dialects stay independent of each other.
var dialectRoutes []route

// registerRoutes adds routes to the edge's table (called from init).
func registerRoutes(rs ...route) { dialectRoutes = append(dialectRoutes, rs...) }

// match finds the route for method and path. found reports whether the
// path exists at all (for 405 versus 404).
func matchRoute(method, path []byte) (r *route, p Params, found bool, allow []string) {
	segs := strings.Split(strings.Trim(string(path), "/"), "/")
	for i := range dialectRoutes {
		rt := &dialectRoutes[i]
		pp, ok := matchPattern(rt.Pattern, segs)
		if !ok {
			continue
		}
		found = true
		if bytes.Equal([]byte(rt.Method), method) || (rt.Method == "GET" && string(method) == "HEAD") {
			return rt, pp, true, nil
		}
		allow = append(allow, rt.Method)
	}
	return nil, nil, found, allow
}

func matchPattern(pattern string, segs []string) (Params, bool) {
	ps := strings.Split(strings.Trim(pattern, "/"), "/")
	if len(ps) != len(segs) {
		return nil, false
	}
	var out Params
	for i, p := range ps {
		if strings.HasPrefix(p, ":") {
			if segs[i] == "" {
				return nil, false
			}
			if out == nil {
				out = Params{}
			}
			out[p[1:]] = segs[i]
			continue
		}
		if p != segs[i] {
			return nil, false
		}
	}
	return out, true
}

// serveDialect answers a request through the route table; false when no
// route has that path.
func (s *Server) serveDialect(ctx *fasthttp.RequestCtx) (string, bool) {
	rt, p, found, allow := matchRoute(ctx.Method(), ctx.Path())
	if !found {
		return "", false
	}
	if rt == nil {
		writeMethodNotAllowed(ctx, strings.Join(allow, ", "), "use "+strings.Join(allow, " or "))
		return routeOther, true
	}
	rt.Handler(s, ctx, p)
	return rt.Name, true
}
