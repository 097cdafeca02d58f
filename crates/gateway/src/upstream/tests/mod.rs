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
