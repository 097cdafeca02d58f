# Markdown tables of medians from bench/acme/bench.sh's results.jsonl (jq -rs).
def median: sort | if length == 0 then null elif length % 2 == 1 then .[length / 2 | floor]
    else (.[length / 2 - 1] + .[length / 2]) / 2 end;
def ms: if . == null then "–" else (. / 100 | round / 10 | tostring) end;
def num(d): if . == null then "–" else (. * pow(10; d) | round / pow(10; d) | tostring) end;
def ratio(a; b): if a == null or b == null or b == 0 then "–" else (a / b * 100 | round / 100 | tostring) + "×" end;

. as $all
| [ .[] | select(.result) ] as $ok
| def cell(s; c): [ $ok[] | select(.server == s and .cell == c) | .result ];
  def med(s; c; f): [ cell(s; c)[] | f | select(. != null) ] | median;
  ([ $ok[].server ] | unique) as $servers
| (
    "### Latency of one full order (1 client; median over runs)",
    "",
    "| server | orders/run | p50 ms | p90 ms | p99 | max ms | p50 ÷ pebble | account ms | server µs CPU/order | polls/order |",
    "|---|---|---|---|---|---|---|---|---|---|",
    ( $servers[] as $s | select(cell($s; "latency") | length > 0)
      | "| \($s) | \(med($s; "latency"; .orders)) | \(med($s; "latency"; .p50_us) | ms) | \(med($s; "latency"; .p90_us) | ms) | \(med($s; "latency"; .p99_us) | ms) | \(med($s; "latency"; .max_us) | ms) | \(ratio(med($s; "latency"; .p50_us); med("pebble"; "latency"; .p50_us))) | \(med($s; "latency"; .account_p50_us) | ms) | \(med($s; "latency"; .server_cpu_us_per_order) | num(0)) | \(med($s; "latency"; .polls_per_order) | num(2)) |" ),
    "",
    "### Throughput (concurrent clients, one account each; median over runs)",
    "",
    "| server | clients | orders/s | ÷ pebble | p50 ms | p99 ms | server CPU (cores) | orders/s per server core | server µs CPU/order | errors |",
    "|---|---|---|---|---|---|---|---|---|---|",
    ( $servers[] as $s | select(cell($s; "throughput") | length > 0)
      | "| \($s) | \(med($s; "throughput"; .concurrency)) | \(med($s; "throughput"; .rate) | num(1)) | \(ratio(med($s; "throughput"; .rate); med("pebble"; "throughput"; .rate))) | \(med($s; "throughput"; .p50_us) | ms) | \(med($s; "throughput"; .p99_us) | ms) | \(med($s; "throughput"; .server_cpu_util) | num(2)) | \(med($s; "throughput"; .orders_per_server_core) | num(1)) | \(med($s; "throughput"; .server_cpu_us_per_order) | num(0)) | \([ cell($s; "throughput")[].errors ] | add) |" ),
    "",
    "### Where an order's time goes, client side (median of each phase's median, ms)",
    "",
    "| server | cell | new_order | authorization | challenge | validation | finalize | issuance | download |",
    "|---|---|---|---|---|---|---|---|---|",
    ( $servers[] as $s | ("latency", "throughput") as $c | select(cell($s; $c) | length > 0)
      | "| \($s) | \($c) | " + ([ "new_order", "authorization", "challenge", "validation", "finalize", "issuance", "download" ]
          | map(. as $p | med($s; $c; .phases[$p].p50_us) | ms) | join(" | ")) + " |" ),
    "",
    ( [ $all[] | select(.error) ] as $failed
      | if ($failed | length) > 0 then "Failed runs:", ($failed[] | "- \(.server) \(.cell // "start") run \(.run): \(.error)"), "" else empty end ),
    ( [ $ok[] | .result.error_kinds as $k | select(($k | length) > 0) | "- \(.server) \(.cell) run \(.run): " + ($k | to_entries | map("\(.value) × \(.key)") | join("; ")) ]
      | if length > 0 then "Errors:", .[], "" else empty end )
  )
