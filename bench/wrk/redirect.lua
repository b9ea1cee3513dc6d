-- redirect.lua: the requests of the suite's closed-loop redirect scenarios,
-- and a machine-readable summary.
--
--   wrk -t1 -c64 -d10s -s bench/wrk/redirect.lua http://127.0.0.1:PORT -- /r/alice
--
-- The requests are built once in init() and handed out in turn, so that
-- generating them costs wrk about what a static request costs and the same
-- script is fair to every server (bare fasthttp, nginx, clickedge). They
-- rotate over real browser user agents (so a UA cache has several keys to
-- hold, as at a real edge) and public client addresses in X-Forwarded-For
-- (which clickedge believes with --trusted-proxies 127.0.0.1/32, so that its
-- geo lookup finds a country), on the path given after "--" (default
-- /r/alice) with a varying sub1.
--
-- done() prints one line "WRKJSON {...}" for the driver: requests, duration
-- (µs), errors and latency percentiles (µs).

local uas = {
  "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
  "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
  "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0",
  "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.43 Mobile Safari/537.36",
  "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15",
  "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.2210.61",
  "Mozilla/5.0 (Linux; Android 13; SAMSUNG SM-S911B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/23.0 Chrome/115.0.0.0 Mobile Safari/537.36",
  "Mozilla/5.0 (iPad; CPU OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
}

local ips = {
  "81.2.69.160", "89.160.20.112", "175.16.199.1", "216.160.83.56",
  "2.125.160.216", "67.43.156.1", "202.196.224.1", "149.101.100.1",
  "128.101.101.101", "217.65.48.1", "50.114.0.1", "111.235.160.1",
  "81.2.69.142", "89.160.20.128", "214.78.120.1", "222.230.136.1",
}

local reqs = {}
local idx = 0

function init(args)
  local path = args[1] or "/r/alice"
  local sep = "?"
  if string.find(path, "?", 1, true) then sep = "&" end
  -- 128 distinct requests: every UA and address, several referrers and sub1s.
  for i = 0, 127 do
    local headers = {}
    headers["User-Agent"] = uas[(i % #uas) + 1]
    headers["X-Forwarded-For"] = ips[(i % #ips) + 1]
    headers["Accept"] = "text/html,application/xhtml+xml"
    headers["Referer"] = "https://blog.example.org/post-" .. (i % 13)
    reqs[#reqs + 1] = wrk.format("GET", path .. sep .. "utm_source=bench&sub1=s" .. (i % 32), headers)
  end
  idx = math.random(#reqs)
end

function request()
  idx = idx + 1
  if idx > #reqs then idx = 1 end
  return reqs[idx]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"mean":%.2f,"p50":%d,"p90":%d,"p99":%d,"p999":%d,"max":%d}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max))
end
