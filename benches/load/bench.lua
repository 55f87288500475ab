-- wrk script for benches/load/run.sh.
--
-- JG_TOKENS=<file>: every request carries the next token of that file ("Authorization:
-- Bearer <token>"), cycling; each wrk thread starts at its own offset. Without it the
-- request is static (the reused token, if any, comes from wrk -H) and Lua costs nothing
-- per request.
-- done() prints one machine-readable line that run.sh parses.

local tokens = nil
local path = os.getenv("JG_TOKENS")
if path and path ~= "" then
  tokens = {}
  for line in io.lines(path) do
    if #line > 0 then
      tokens[#tokens + 1] = "Bearer " .. line
    end
  end
end

local next_id = 1
function setup(thread)
  thread:set("jg_thread", next_id)
  next_id = next_id + 1
end

if tokens then
  local index = 0
  function init(args)
    local n = tonumber(jg_thread) or 1
    index = ((n - 1) * 997) % #tokens
  end
  function request()
    index = index + 1
    if index > #tokens then
      index = 1
    end
    wrk.headers["Authorization"] = tokens[index]
    return wrk.format(nil, nil, wrk.headers)
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "JGRESULT requests=%d duration_us=%d p50_us=%d p90_us=%d p99_us=%d mean_us=%.1f max_us=%d " ..
    "err_connect=%d err_read=%d err_write=%d err_status=%d err_timeout=%d\n",
    summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.mean, latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end
