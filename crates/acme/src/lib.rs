//! The ACME server (RFC 8555) on top of the gatehouse CA.
//!
//! It owns the protocol: JWS requests ([`jws`]), nonces, accounts, orders,
//! authorizations and challenges, their validation against the network,
//! finalization through the CA's policy, certificate download, revocation and
//! renewal information (RFC 9773). It keeps every piece of state in the
//! [`store::Store`], so any instance on a shared database can answer a
//! client. It knows nothing of the gateway's proxying.
//!
//! Written by hand because no maintained Rust crate implements the server
//! side of ACME: the crates of the field (instant-acme, acme2) are clients.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod jws;
mod problem;
mod server;
mod validate;

pub use problem::Problem;
pub use server::{AcmeServer, Settings};
