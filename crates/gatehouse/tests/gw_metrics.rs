//! /metrics on the admin listener: request durations by route and status class,
//! refusals by reason, handshake and upstream connect durations.
mod support;
use support::*;

use std::time::Duration;

/// An `optional` site whose `/admin` route requires a certificate, with an admin listener.
fn gateway(env: &Env, up: &Upstream) -> (Gateway, u16) {
    let (https, admin) = (free_port(), free_port());
    let site = "mtls = \"optional\"\ntrust = { internal_ca = true }\n\
                [[site.route]]\npath_prefix = \"/admin\"\nmtls = \"require\"\n";
    let toml = localhost_config(env, &listen_toml(https, None, Some(admin)), up, "", site);
    let gw = Gateway::start(env, "gw.toml", https, &toml);
    assert!(poll_until(Duration::from_secs(5), || port_open(admin)).is_some(), "admin listener not up");
    (gw, admin)
}

/// /metrics once every sample of `wanted` has reached its value (a response is counted as its body ends).
#[track_caller]
fn metrics_once(gw: &Gateway, admin: u16, wanted: &[(&str, f64)]) -> String {
    let mut last = String::new();
    let found = wait_for(Duration::from_secs(10), Duration::from_millis(100), || {
        last = metrics(admin);
        wanted.iter().all(|(sample, at_least)| metric(&last, sample).is_some_and(|v| v >= *at_least)).then_some(())
    });
    assert!(found.is_some(), "not {wanted:?} after 10 s:\n{last}\n{}", gw.proc.dump());
    last
}

#[test]
fn requests_are_timed_by_route_and_status_class_and_refusals_counted_by_reason() {
    let env = Env::new();
    let up = Upstream::start(&env);
    let (gw, admin) = gateway(&env, &up);

    let refused = gw.curl("localhost", "/admin/panel", &[]);
    assert_eq!(refused.status, 403, "{refused:?}");
    let served = gw.curl("localhost", "/hello", &[]);
    assert!(served.ok(), "{served:?}");
    let misdirected = gw.curl("localhost", "/hello", &["-H", "Host: other.test"]);
    assert_eq!(misdirected.status, 421, "{misdirected:?}");

    let answered = [("gatehouse_requests_total{code=\"4xx\"}", 2.0), ("gatehouse_requests_total{code=\"2xx\"}", 1.0)];
    let m = metrics_once(&gw, admin, &answered);
    let samples = [
        ("gatehouse_request_duration_seconds_bucket{route=\"/admin\",code=\"4xx\",le=\"+Inf\"}", 1.0),
        ("gatehouse_request_duration_seconds_count{route=\"/admin\",code=\"4xx\"}", 1.0),
        ("gatehouse_request_duration_seconds_bucket{route=\"default\",code=\"2xx\",le=\"+Inf\"}", 1.0),
        ("gatehouse_request_duration_seconds_count{route=\"default\",code=\"2xx\"}", 1.0),
        ("gatehouse_request_duration_seconds_count{route=\"none\",code=\"4xx\"}", 1.0),
        ("gatehouse_request_duration_seconds_count{route=\"/admin\",code=\"2xx\"}", 0.0),
        ("gatehouse_requests_refused_total{reason=\"route_requires_certificate\"}", 1.0),
        ("gatehouse_requests_refused_total{reason=\"host_not_served_on_this_connection\"}", 1.0),
        ("gatehouse_requests_refused_total{reason=\"no_route\"}", 0.0),
    ];
    for (sample, want) in samples {
        assert_eq!(metric(&m, sample), Some(want), "{sample}:\n{m}");
    }
    assert!(m.contains("# TYPE gatehouse_request_duration_seconds histogram\n"), "{m}");
    let fastest = metric(&m, "gatehouse_request_duration_seconds_bucket{route=\"/admin\",code=\"4xx\",le=\"0.0005\"}");
    assert!(fastest.is_some(), "the first bucket is there, zero or not:\n{m}");

    let connects = metric(&m, "gatehouse_upstream_connect_duration_seconds_count{upstream=\"app\"}");
    assert!(connects.is_some_and(|n| n >= 1.0), "the 200 opened a connection to the origin:\n{m}");
}

#[test]
fn every_completed_handshake_is_timed() {
    let env = Env::new();
    let up = Upstream::start(&env);
    let (gw, admin) = gateway(&env, &up);
    let handshakes = 3;
    for _ in 0..handshakes {
        assert!(gw.curl("localhost", "/", &[]).ok());
    }
    let m = metrics_once(&gw, admin, &[("gatehouse_tls_handshakes_total", f64::from(handshakes))]);
    let count = metric(&m, "gatehouse_tls_handshake_duration_seconds_count");
    assert!(count.is_some_and(|n| n >= f64::from(handshakes)), "{m}");
    assert_eq!(count, metric(&m, "gatehouse_tls_handshakes_total"), "one observation per handshake:\n{m}");
    let all = metric(&m, "gatehouse_tls_handshake_duration_seconds_bucket{le=\"+Inf\"}");
    assert_eq!(all, count, "{m}");
    assert!(metric(&m, "gatehouse_tls_handshake_duration_seconds_sum").is_some_and(|s| s > 0.0), "{m}");

    let r = curl(&[format!("http://127.0.0.1:{admin}/metrics")]);
    assert_eq!(r.header("content-type"), Some("text/plain; version=0.0.4; charset=utf-8"), "{r:?}");
}
