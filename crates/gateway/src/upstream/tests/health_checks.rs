//! Active health checks: down after `unhealthy_threshold` failures, up after
//! `healthy_threshold` successes, and stopped when the pool is dropped.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering::SeqCst;

use super::support::{Origin, front, get, pool_from, wait_until};

fn checked_pool(a: &Origin, b: &Origin) -> Arc<crate::upstream::Pool> {
    pool_from(
        &format!(
            r#"name = "app"
               servers = ["{}", "{}"]
               [health]
               path = "/health"
               interval_ms = 40
               timeout_ms = 500
               healthy_threshold = 2
               unhealthy_threshold = 2"#,
            a.url(),
            b.url()
        ),
        Path::new("."),
    )
}

#[tokio::test]
async fn health_checks_take_a_server_down_and_bring_it_back() {
    let a = Origin::start("a").await;
    let b = Origin::start("b").await;
    let pool = checked_pool(&a, &b);
    pool.spawn_health_checks();
    pool.spawn_health_checks(); // a second call starts nothing more
    let front = front(pool.clone()).await;

    a.state.healthy.store(false, SeqCst);
    wait_until("a is marked down", || pool.healthy() == 1).await;
    assert!(!pool.servers[0].available());
    for _ in 0..4 {
        let reply = get(front, "/").await;
        assert_eq!((reply.status.as_u16(), reply.server()), (200, b.authority().as_str()));
    }

    b.state.healthy.store(false, SeqCst);
    wait_until("b is marked down", || pool.healthy() == 0).await;
    let reply = get(front, "/").await;
    assert_eq!(reply.status, 503, "{}", reply.body);

    a.state.healthy.store(true, SeqCst);
    b.state.healthy.store(true, SeqCst);
    wait_until("both are marked up", || pool.healthy() == 2).await;
    let mut servers = Vec::new();
    for _ in 0..2 {
        let reply = get(front, "/").await;
        assert_eq!(reply.status, 200);
        servers.push(reply.server().to_owned());
    }
    servers.sort();
    let mut expected = vec![a.authority(), b.authority()];
    expected.sort();
    assert_eq!(servers, expected);
}

#[tokio::test]
async fn one_failed_check_below_the_threshold_changes_nothing() {
    let a = Origin::start("a").await;
    let b = Origin::start("b").await;
    let pool = pool_from(
        &format!(
            r#"name = "app"
               servers = ["{}", "{}"]
               health = {{ path = "/health", interval_ms = 40, unhealthy_threshold = 1000 }}"#,
            a.url(),
            b.url()
        ),
        Path::new("."),
    );
    pool.spawn_health_checks();
    a.state.healthy.store(false, SeqCst);
    let hits = a.state.clone();
    wait_until("a few checks ran", || hits.health_hits.load(SeqCst) >= 3).await;
    assert_eq!(pool.healthy(), 2);
}

#[tokio::test]
async fn health_checks_stop_when_the_pool_is_dropped() {
    let a = Origin::start("a").await;
    let b = Origin::start("b").await;
    let pool = checked_pool(&a, &b);
    pool.spawn_health_checks();
    let state = a.state.clone();
    wait_until("checks run", || state.health_hits.load(SeqCst) >= 2).await;
    let dropped = Arc::downgrade(&pool);
    drop(pool);
    // A round under way holds the pool until it ends; then no round can start.
    wait_until("the last round let go of the pool", || dropped.strong_count() == 0).await;

    // The clock: a pool with the same checks, still alive, checking other origins.
    let c = Origin::start("c").await;
    let d = Origin::start("d").await;
    let control = checked_pool(&c, &d);
    control.spawn_health_checks();
    let checks_of_c = |n: usize| {
        let c = c.state.clone();
        move || c.health_hits.load(SeqCst) >= n
    };
    // A check the dropped pool sent just before the end may still be counted meanwhile.
    wait_until("the control pool checked c twice", checks_of_c(2)).await;
    let hits = |o: &Origin| o.state.health_hits.load(SeqCst);
    let after_drop = (hits(&a), hits(&b));
    wait_until("the control pool checked c five times more", checks_of_c(7)).await;
    assert_eq!((hits(&a), hits(&b)), after_drop, "the dropped pool's checks ran on while the control pool's ran");
}
