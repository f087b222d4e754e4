-- Bandit traffic with feedback mixed in. Routed requests are the header-only requests of
-- headers.lua (model "chat"); every 10th request is instead
--   POST /feedback {"decision": "<x-inference-decision of an earlier answer>", "reward": r}
-- for a decision id this connection's thread received and has not reported yet (each id once:
-- the filter refuses replays). Reward 1 for the target "stable", 0 for any other, read from the
-- id (<model>~<target>~…). While the thread holds no id (the first requests of a run), that 10th
-- request is a routed one.
-- Argument (after `--`): `placeholder` (for the floor rows, whose answers carry no decision id):
-- every 10th request is that POST /feedback with a made-up id of a real one's length, so a
-- filter that does not answer feedback itself routes it upstream like any request.
-- Answers are counted by where they came from (for the report): `answered_upstream` (they carry
-- the upstream's `x-reward` header: routed requests) and `answered_locally` (the rest: feedback
-- answered by the filter itself, or a local error reply). report.lua prints both.
local routed = {}
local n = 0
local i = 0
local count = 0
local ids = {}
local placeholder = false
answered_upstream = 0
answered_locally = 0

-- Shaped and sized like a real id (`<model>~<target>~<expires>~<nonce>~<bound>~<key id>~<tag>`,
-- core/src/feedback/token.rs): 77 characters.
local PLACEHOLDER_ID = "chat~stable~1999999999~" .. string.rep("0", 16) .. "~-~k0~" ..
  string.rep("0", 32)

function init(args)
  placeholder = args[1] == "placeholder"
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
    ["x-inference-cluster"] = "chat",
  }, body)
end

function request()
  count = count + 1
  if count % 10 == 0 then
    if #ids > 0 then
      return feedback(table.remove(ids))
    elseif placeholder then
      return feedback(PLACEHOLDER_ID)
    end
  end
  i = i % n + 1
  return routed[i]
end

function response(status, headers, body)
  if headers["x-reward"] then
    answered_upstream = answered_upstream + 1
  else
    answered_locally = answered_locally + 1
  end
  local id = headers["x-inference-decision"]
  if id and #ids < 256 then
    ids[#ids + 1] = id
  end
end
