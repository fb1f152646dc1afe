-- Appended by interleave.sh to wrk's script (after LUA's, whose own `done` it replaces): prints
-- the tail that wrk's --latency table leaves out, the 99.9th percentile and the largest latency,
-- in µs. With pipeline.lua a latency is a batch's (its write to its last response).
done = function(summary, latency, requests)
  io.write(string.format("TAIL %.0f %.0f\n", latency:percentile(99.9), latency.max))
end
