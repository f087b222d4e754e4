-- Header-only traffic, the same for every header-routed configuration:
--   GET /v1/chat/completions
--   x-model: <model>                 (inference-router and the minimal filter read it)
--   x-user-id: user-000001 … N       (cycles over N distinct users; sticky routing hashes it)
--   x-inference-cluster: chat        (plain cluster_header routes on it; filters replace it)
-- Arguments (after `--`): model (default chat), number of users (default 10000).
-- Requests are formatted once in init(); request() only picks the next one.
local reqs = {}
local n = 0
local i = 0

function init(args)
  local model = args[1] or "chat"
  n = tonumber(args[2] or "10000")
  for u = 1, n do
    reqs[u] = wrk.format("GET", "/v1/chat/completions", {
      ["Host"] = "bench",
      ["x-model"] = model,
      ["x-user-id"] = string.format("user-%06d", u),
      ["x-inference-cluster"] = "chat",
    })
  end
end

function request()
  i = i % n + 1
  return reqs[i]
end
