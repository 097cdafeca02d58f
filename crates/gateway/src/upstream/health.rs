//! Active health checks: every `interval_ms`, a `GET` of `health.path` to
//! each server over a new connection (so a server that stopped accepting
//! connections is noticed even while old keep-alive connections still work).
//! `unhealthy_threshold` failures in a row take a server down,
//! `healthy_threshold` successes in a row bring it back.

use std::sync::Weak;

use futures_util::future::join_all;
use http::header::{CONNECTION, HOST, USER_AGENT};
use http::{Request, Uri};
use http_body_util::{Either, Empty};
use tokio::time::MissedTickBehavior;

use super::config::HealthCheck;
use super::connect::Connector;
use super::pool::Pool;
use super::server::Server;

/// Consecutive results of one server's checks.
#[derive(Debug, Clone, Copy, Default)]
struct Streak {
    passed: u32,
    failed: u32,
}

/// Checks the servers of `pool` until the pool is dropped.
pub(super) async fn run(pool: Weak<Pool>, check: HealthCheck) {
    let mut ticker = tokio::time::interval(check.interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut streaks = Vec::new();
    loop {
        ticker.tick().await;
        // Held only for one round, so dropping the pool ends the checks.
        let Some(pool) = pool.upgrade() else {
            return;
        };
        streaks.resize(pool.servers.len(), Streak::default());
        let results = join_all(pool.servers.iter().map(|server| probe(&pool.connector, server, &check))).await;
        for ((server, streak), result) in pool.servers.iter().zip(&mut streaks).zip(results) {
            record(server, streak, result, &check);
        }
    }
}

fn record(server: &Server, streak: &mut Streak, result: Result<(), String>, check: &HealthCheck) {
    match result {
        Ok(()) => {
            // It accepts connections: a passive ejection need not run its course.
            server.connect_succeeded();
            streak.failed = 0;
            streak.passed = streak.passed.saturating_add(1);
            if streak.passed >= check.healthy_threshold {
                let reason = format!("{} consecutive checks passed", streak.passed);
                server.set_up(true, &reason);
            }
        }
        Err(why) => {
            streak.passed = 0;
            streak.failed = streak.failed.saturating_add(1);
            if streak.failed >= check.unhealthy_threshold {
                let reason = format!("{} consecutive checks failed, last: {why}", streak.failed);
                server.set_up(false, &reason);
            }
        }
    }
}

/// One check of one server; the error says why it failed.
async fn probe(connector: &Connector, server: &Server, check: &HealthCheck) -> Result<(), String> {
    let exchange = async {
        let mut conn = connector.connect(server).await.map_err(|e| e.to_string())?;
        let req = Request::get(Uri::from(check.path.clone()))
            .header(HOST, server.check_host.as_str())
            .header(USER_AGENT, "gatehouse-health-check")
            .header(CONNECTION, "close")
            .body(Either::Right(Empty::new()))
            .map_err(|e| format!("health check request: {e}"))?;
        let response = conn.sender.send_request(req).await.map_err(|e| format!("no response: {e}"))?;
        let status = response.status();
        if check.accepts(status) { Ok(()) } else { Err(format!("status {status}")) }
    };
    tokio::time::timeout(check.timeout, exchange)
        .await
        .unwrap_or_else(|_| Err(format!("no response within {} ms", check.timeout.as_millis())))
}
