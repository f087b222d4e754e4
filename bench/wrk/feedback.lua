-- Bandit traffic with feedback mixed in. Routed requests are the header-only requests of
-- headers.lua (model "chat"); every 10th request is instead
--   POST /feedback {"decision": "<x-inference-decision of an earlier answer>", "reward": r}
-- for a decision id this connection's thread received and has not reported yet (each id once:
-- the filter refuses replays). Reward 1 for the target "stable", 0 for any other, read from the
-- id (<model>~<target>~<expires>~<nonce>~<signature>).
local routed = {}
local n = 0
local i = 0
local count = 0
local ids = {}

function init(args)
  n = 1000
  for u = 1, n do
    routed[u] = wrk.format("GET", "/v1/chat/completions", {
      ["Host"] = "bench",
      ["x-model"] = "chat",
      ["x-user-id"] = string.format("user-%06d", u),
      ["x-inference-cluster"] = "chat",
    })
  end
end

local function feedback(id)
  local target = id:match("^[^~]*~([^~]*)~")
  local reward = (target == "stable") and "1" or "0"
  local body = '{"decision":"' .. id .. '","reward":' .. reward .. '}'
  return wrk.format("POST", "/feedback", {
    ["Host"] = "bench",
    ["content-type"] = "application/json",
  }, body)
end

function request()
  count = count + 1
  if count % 10 == 0 and #ids > 0 then
    return feedback(table.remove(ids))
  end
  i = i % n + 1
  return routed[i]
end

function response(status, headers, body)
  local id = headers["x-inference-decision"]
  if id and #ids < 256 then
    ids[#ids + 1] = id
  end
end
