-- Body traffic, the same for every body configuration: an OpenAI chat/completions request
--   POST /v1/chat/completions, content-type: application/json, the body read from a file
--   (written by `core-bench --write-bodies`; the model name, "chat", is in the body), and
--   x-inference-cluster: chat (plain cluster_header routes on it; filters replace it).
-- Argument (after `--`): the body file.
local req

function init(args)
  local f = assert(io.open(args[1], "rb"))
  local body = f:read("*a")
  f:close()
  req = wrk.format("POST", "/v1/chat/completions", {
    ["Host"] = "bench",
    ["content-type"] = "application/json",
    ["x-inference-cluster"] = "chat",
  }, body)
end

function request()
  return req
end
