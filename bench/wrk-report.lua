-- wrk script: print a machine-readable summary (key=value lines) after the human one.
-- Used by bench/run.sh for the max-throughput runs.
done = function(summary, latency, requests)
  local e = summary.errors
  io.write("--- machine-readable ---\n")
  io.write(string.format("requests=%d\n", summary.requests))
  io.write(string.format("duration_us=%d\n", summary.duration))
  io.write(string.format("bytes=%d\n", summary.bytes))
  io.write(string.format("rps=%.1f\n", summary.requests / (summary.duration / 1e6)))
  io.write(string.format("errors=%d\n", e.connect + e.read + e.write + e.status + e.timeout))
  io.write(string.format("errors_status=%d\n", e.status))
  io.write(string.format("lat_p50_ms=%.3f\n", latency:percentile(50) / 1000))
  io.write(string.format("lat_p99_ms=%.3f\n", latency:percentile(99) / 1000))
end
