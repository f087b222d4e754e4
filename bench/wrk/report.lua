-- Appended to every scenario script by bench.py: one machine-readable line when wrk is done.
-- `answered_upstream` / `answered_locally`: answers counted by where they came from, by the
-- scripts that count them (feedback.lua; 0 from the others).
local threads = {}

function setup(thread)
  threads[#threads + 1] = thread
end

local function total(name)
  local sum = 0
  for _, thread in ipairs(threads) do
    sum = sum + (thread:get(name) or 0)
  end
  return sum
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d p50_us=%d p99_us=%d connect=%d read=%d write=%d status=%d timeout=%d upstream=%d local=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.status, e.timeout,
    total("answered_upstream"), total("answered_locally")))
end
