-- wrk script for bench_resolve.py: rotate through many valid codes, print a JSON summary.
-- env: CODES (file, one code per line), PREFIX (path before the code), START (where in the
-- list this run begins; the bench passes where its previous run stopped -- "next" in the
-- summary -- so many short runs spread their scans over all codes instead of scanning the
-- list's head again, and a list of first scans never sends a code twice).
local codes = {}
local prefix = os.getenv("PREFIX") or "/api/v1/resolve/"
local start = tonumber(os.getenv("START") or "0") or 0
for line in io.lines(os.getenv("CODES")) do
  codes[#codes + 1] = line
end
-- global, not local: done() reads each thread's through thread:get("counter")
counter = 0
local threads = {}
local STRIDE = 2  -- wrk -t2: thread i takes positions start + i, start + i + 2, ...

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  counter = start + (tonumber(tid) or 0) - STRIDE
end

function request()
  counter = counter + STRIDE
  return wrk.format("GET", prefix .. codes[(counter % #codes) + 1])
end

function done(summary, latency, requests)
  -- where the next run starts: past every position any thread took (each code of a
  -- first-scan list is sent once, also across runs)
  local last = start - 1
  for _, thread in ipairs(threads) do
    last = math.max(last, tonumber(thread:get("counter")) or last)
  end
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "bytes": %d, "connect": %d, "read": %d, ' ..
    '"write": %d, "status": %d, "timeout": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, ' ..
    '"max_us": %d, "next": %d}\n',
    summary.requests, summary.duration, summary.bytes, summary.errors.connect,
    summary.errors.read, summary.errors.write, summary.errors.status, summary.errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, last + 1))
end
