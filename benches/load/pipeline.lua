-- wrk script: HTTP/1.1 pipelining, DEPTH requests (default 16) in each write.
-- wrk counts every response as a request; its latency is per batch (write → last response).
-- The request keeps wrk's -H headers and the URL's path.
local depth = tonumber(os.getenv("DEPTH") or "16")

init = function(args)
  local batch = {}
  for i = 1, depth do
    batch[i] = wrk.format(nil)
  end
  req = table.concat(batch)
end

request = function()
  return req
end
