//! `report`: Markdown tables (medians over runs) from the JSON lines that
//! bench/gateway/compare.sh writes, one line per (run, cell, proxy):
//! `{"proxy":"nginx","cell":"h1","run":1,"result":{...}}` or `{..., "error":"..."}`.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::BoxError;

const CELLS: [&str; 4] = ["h1", "h2", "handshake", "idle"];
const LOAD_CELLS: [&str; 3] = ["h1", "h2", "handshake"];

#[derive(Default)]
struct Cell {
    results: Vec<Value>,
    failures: Vec<String>,
}

impl Cell {
    fn values(&self, key: &str) -> Vec<f64> {
        self.results.iter().filter_map(|r| r.get(key).and_then(Value::as_f64)).collect()
    }
    fn median(&self, key: &str) -> Option<f64> {
        median(self.values(key))
    }
    fn sum(&self, key: &str) -> f64 {
        self.values(key).iter().sum()
    }
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 })
}

fn thousands(v: f64) -> String {
    let s = format!("{:.0}", v.abs());
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if v < 0.0 { format!("-{out}") } else { out }
}

fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map_or_else(|| "–".to_string(), f)
}

#[derive(Clone, Copy)]
enum Better {
    Higher,
    Lower,
}

struct Metric {
    name: &'static str,
    better: Better,
    fmt: fn(f64) -> String,
    get: fn(&Proxy) -> Option<f64>,
}

struct Proxy {
    name: String,
    cells: BTreeMap<&'static str, Cell>,
}

impl Proxy {
    fn cell(&self, c: &str) -> Option<&Cell> {
        self.cells.get(c).filter(|c| !c.results.is_empty())
    }
    fn med(&self, cell: &str, key: &str) -> Option<f64> {
        self.cell(cell).and_then(|c| c.median(key))
    }
    /// Peak RSS under load: the largest of the per-cell medians of VmHWM (KiB).
    fn peak_rss(&self) -> Option<(f64, Option<f64>)> {
        let mut best: Option<(f64, Option<f64>)> = None;
        for c in LOAD_CELLS {
            if let Some(h) = self.med(c, "proxy_hwm_kib")
                && best.is_none_or(|(b, _)| h > b)
            {
                best = Some((h, self.med(c, "aux_hwm_kib")));
            }
        }
        best
    }
}

fn mib(kib: f64) -> String {
    format!("{:.1} MiB", kib / 1024.0)
}

pub fn report(file: &Path) -> Result<(), BoxError> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let mut proxies: Vec<Proxy> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(line).map_err(|e| format!("{}:{}: {e}", file.display(), i + 1))?;
        let name = v.get("proxy").and_then(Value::as_str).unwrap_or("?").to_string();
        let cell_name = v.get("cell").and_then(Value::as_str).unwrap_or("?");
        let Some(cell_key) = CELLS.iter().find(|c| **c == cell_name) else {
            continue;
        };
        let idx = match proxies.iter().position(|p| p.name == name) {
            Some(i) => i,
            None => {
                proxies.push(Proxy { name: name.clone(), cells: BTreeMap::new() });
                proxies.len() - 1
            }
        };
        let cell = proxies[idx].cells.entry(cell_key).or_default();
        if let Some(r) = v.get("result") {
            cell.results.push(r.clone());
        } else {
            let err = v.get("error").and_then(Value::as_str).unwrap_or("no result").to_string();
            cell.failures.push(err);
        }
    }
    if proxies.is_empty() {
        return Err(format!("{}: no results", file.display()).into());
    }

    let metrics: Vec<Metric> = vec![
        Metric {
            name: "HTTP/1.1 keep-alive req/s per core",
            better: Better::Higher,
            fmt: thousands,
            get: |p| p.med("h1", "rate_per_proxy_core"),
        },
        Metric {
            name: "µs CPU/req (h1)",
            better: Better::Lower,
            fmt: |v| format!("{v:.1}"),
            get: |p| p.med("h1", "proxy_cpu_us_per_op"),
        },
        Metric {
            name: "HTTP/2 keep-alive req/s per core",
            better: Better::Higher,
            fmt: thousands,
            get: |p| p.med("h2", "rate_per_proxy_core"),
        },
        Metric {
            name: "µs CPU/req (h2)",
            better: Better::Lower,
            fmt: |v| format!("{v:.1}"),
            get: |p| p.med("h2", "proxy_cpu_us_per_op"),
        },
        Metric {
            name: "full mTLS handshakes/s per core",
            better: Better::Higher,
            fmt: thousands,
            get: |p| p.med("handshake", "rate_per_proxy_core"),
        },
        Metric {
            name: "µs CPU/handshake",
            better: Better::Lower,
            fmt: thousands,
            get: |p| p.med("handshake", "proxy_cpu_us_per_op"),
        },
        Metric { name: "peak RSS under load", better: Better::Lower, fmt: mib, get: |p| p.peak_rss().map(|(h, _)| h) },
        Metric {
            name: "RSS per idle TLS conn",
            better: Better::Lower,
            fmt: |b| format!("{:.1} KiB", b / 1024.0),
            get: |p| p.med("idle", "rss_per_conn_bytes"),
        },
    ];

    let runs =
        proxies.iter().flat_map(|p| p.cells.values().map(|c| c.results.len() + c.failures.len())).max().unwrap_or(0);
    println!("## Proxy comparison (median of {runs} run(s); proxy on one core)\n");
    print!("| proxy |");
    for m in &metrics {
        print!(" {} |", m.name);
    }
    println!();
    print!("|---|");
    for _ in &metrics {
        print!("---:|");
    }
    println!();
    for p in &proxies {
        print!("| {} |", p.name);
        for m in &metrics {
            let v = (m.get)(p);
            let mut s = opt(v, m.fmt);
            if m.name == "peak RSS under load"
                && let Some((_, Some(aux))) = p.peak_rss()
            {
                s.push_str(&format!(" (+{:.1} master)", aux / 1024.0));
            }
            print!(" {s} |");
        }
        println!();
    }

    let peers: Vec<&Proxy> = proxies.iter().filter(|p| p.name != "gatehouse").collect();
    if !peers.is_empty() {
        println!("\n## Ratios vs the best peer (value ÷ best peer's value)\n");
        println!("Rates: higher is better. µs CPU and memory: lower is better. The best peer is per column.\n");
        print!("| proxy |");
        for m in &metrics {
            print!(" {} |", m.name);
        }
        println!();
        print!("|---|");
        for _ in &metrics {
            print!("---:|");
        }
        println!();
        let bests: Vec<Option<(f64, &str)>> = metrics
            .iter()
            .map(|m| {
                peers.iter().filter_map(|p| (m.get)(p).map(|v| (v, p.name.as_str()))).fold(None, |acc, (v, n)| {
                    match (acc, m.better) {
                        (None, _) => Some((v, n)),
                        (Some((b, _)), Better::Higher) if v > b => Some((v, n)),
                        (Some((b, _)), Better::Lower) if v < b => Some((v, n)),
                        (a, _) => a,
                    }
                })
            })
            .collect();
        print!("| best peer |");
        for (m, b) in metrics.iter().zip(&bests) {
            print!(" {} |", b.map_or("–".into(), |(v, n)| format!("{n} {}", (m.fmt)(v))));
        }
        println!();
        for p in &proxies {
            print!("| {} |", p.name);
            for (m, b) in metrics.iter().zip(&bests) {
                let s = match ((m.get)(p), b) {
                    (Some(v), Some((b, _))) if *b > 0.0 => format!("{:.2}×", v / b),
                    _ => "–".into(),
                };
                print!(" {s} |");
            }
            println!();
        }
    }

    println!("\n## Details (medians; errors summed over runs)\n");
    println!(
        "| proxy | cell | runs | wall rate/s | proxy CPU | errors / ok | p50 µs | p99 µs | loadgen µs CPU/op | peak RSS |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for p in &proxies {
        for c in LOAD_CELLS {
            let Some(cell) = p.cells.get(c) else { continue };
            let runs = format!(
                "{}{}",
                cell.results.len(),
                if cell.failures.is_empty() { String::new() } else { format!(" (+{} failed)", cell.failures.len()) }
            );
            println!(
                "| {} | {} | {} | {} | {} | {} / {} | {} | {} | {} | {} |",
                p.name,
                c,
                runs,
                opt(cell.median("rate"), thousands),
                opt(cell.median("proxy_cpu_util"), |u| format!("{:.0} %", u * 100.0)),
                thousands(cell.sum("errors")),
                thousands(cell.sum("requests")),
                opt(cell.median("p50_us"), thousands),
                opt(cell.median("p99_us"), thousands),
                opt(cell.median("loadgen_cpu_us_per_op"), |v| format!("{v:.1}")),
                opt(cell.median("proxy_hwm_kib"), mib),
            );
        }
    }
    println!(
        "\n| proxy | idle runs | connections | opened | failed | open after hold | RSS before | RSS idle | per conn |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for p in &proxies {
        let Some(cell) = p.cells.get("idle") else {
            continue;
        };
        println!(
            "| {} | {}{} | {} | {} | {} | {} | {} | {} | {} |",
            p.name,
            cell.results.len(),
            if cell.failures.is_empty() { String::new() } else { format!(" (+{} failed)", cell.failures.len()) },
            opt(cell.median("connections"), thousands),
            opt(cell.median("opened"), thousands),
            thousands(cell.sum("failed")),
            opt(cell.median("open_after_hold"), thousands),
            opt(cell.median("rss_before_kib"), mib),
            opt(cell.median("rss_idle_kib"), mib),
            opt(cell.median("rss_per_conn_bytes"), |b| format!("{:.1} KiB", b / 1024.0)),
        );
    }

    let mut notes = Vec::new();
    for p in &proxies {
        for (c, cell) in &p.cells {
            for f in &cell.failures {
                notes.push(format!("- {} {}: run failed: {}", p.name, c, f));
            }
            let mut kinds: BTreeMap<String, f64> = BTreeMap::new();
            for r in &cell.results {
                if let Some(Value::Object(m)) = r.get("error_kinds") {
                    for (k, v) in m {
                        *kinds.entry(k.clone()).or_insert(0.0) += v.as_f64().unwrap_or(0.0);
                    }
                }
            }
            for (k, v) in kinds {
                notes.push(format!("- {} {}: {} × {}", p.name, c, thousands(v), k));
            }
        }
    }
    if !notes.is_empty() {
        println!("\n## Errors\n");
        for n in notes {
            println!("{n}");
        }
    }
    Ok(())
}
