//! The store's behaviour, on SQLite and on a real PostgreSQL.
//!
//! Each behaviour is one async fn taking a [`fresh::Fresh`] database; the
//! `on_both_backends!` macro runs it once on a SQLite file and once on a
//! database in this binary's PostgreSQL test cluster (the `test-cluster` crate). What only a
//! shared database can show (two instances at once) is in `postgres.rs`.

mod acme;
mod acme_client;
mod ca_files;
mod certificates;
mod fresh;
mod leases;
mod postgres;
mod revocation_log;
mod snapshot;
