-- wrk script for bench_resolve.py: rotate through many valid codes, print a JSON summary.
-- env: CODES (file, one code per line), PREFIX (path before the code), START (where in the
-- list this run begins; the bench passes where its previous run stopped, so many short runs
-- spread their scans over all codes instead of scanning the list's head again each time).
local codes = {}
local prefix = os.getenv("PREFIX") or "/api/v1/resolve/"
local start = tonumber(os.getenv("START") or "0") or 0
for line in io.lines(os.getenv("CODES")) do
  codes[#codes + 1] = line
end
local counter = 0
local thread_id = 0
local threads = {}

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  -- each thread starts at its own place in the list, half the list apart
  counter = start + (tonumber(tid) or 0) * math.floor(#codes / 2)
end

function request()
  counter = counter + 1
  return wrk.format("GET", prefix .. codes[(counter % #codes) + 1])
end

function done(summary, latency, requests)
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "bytes": %d, "connect": %d, "read": %d, ' ..
    '"write": %d, "status": %d, "timeout": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, ' ..
    '"max_us": %d}\n',
    summary.requests, summary.duration, summary.bytes, summary.errors.connect,
    summary.errors.read, summary.errors.write, summary.errors.status, summary.errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
