-- wrk script for the single-transaction endpoint: every request posts a new transaction
-- (ids unique per run, thread and request) for one of the products that exist; prints its
-- figures as one JSON line. Settings come from the environment, as for the Locust users:
-- BENCH_RUN, BENCH_PRODUCTS (comma-separated), BENCH_API_KEY.
local run = os.getenv("BENCH_RUN")
local key = os.getenv("BENCH_API_KEY")
local products = {}
for p in string.gmatch(os.getenv("BENCH_PRODUCTS"), "[^,]+") do
  products[#products + 1] = p
end

local threads = {}
local counter = 1

function setup(thread)
  thread:set("id", #threads + 1)
  threads[#threads + 1] = thread
end

function init(args)
  counter = 0
  statuses = 0
end

function request()
  counter = counter + 1
  local body = string.format(
    '{"transaction_id":"%s-s%d-%d","product_id":"%s","quantity":1,"timestamp":"%s"}',
    run, id, counter, products[(counter % #products) + 1], os.date("!%Y-%m-%dT%H:%M:%SZ"))
  return wrk.format("POST", "/api/v1/transactions",
    {["Content-Type"] = "application/json", ["X-API-Key"] = key}, body)
end

function response(status, headers, body)
  if status ~= 202 then
    statuses = statuses + 1
  end
end

function done(summary, latency, requests)
  local refused = 0
  for _, thread in ipairs(threads) do
    refused = refused + thread:get("statuses")
  end
  io.write(string.format(
    '{"requests": %d, "seconds": %.3f, "errors": %d, "not_202": %d, '
      .. '"p50_ms": %.2f, "p99_ms": %.2f}\n',
    summary.requests, summary.duration / 1e6,
    summary.errors.connect + summary.errors.read + summary.errors.write
      + summary.errors.status + summary.errors.timeout,
    refused, latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
