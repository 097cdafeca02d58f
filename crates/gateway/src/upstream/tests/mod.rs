//! Tests of the upstream pool against real servers on 127.0.0.1: each test
//! starts hyper origins, a front server that forwards through the pool as the
//! proxy does, and a client.

mod balancing;
mod certs;
mod config_checks;
mod failover;
mod health_checks;
mod origin_tls;
mod support;
mod upgrade;

/// A pool is shared between connection tasks as `Arc<Pool>`.
#[test]
fn a_pool_can_be_shared_between_threads() {
    fn shared<T: Send + Sync + 'static>() {}
    shared::<crate::upstream::Pool>();
}
