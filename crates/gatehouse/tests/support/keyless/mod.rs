//! The key server tests' peers (issue 11): `gatehouse keyserver` as a fixture
//! ([`KeyServer`]), private keys made by openssl in every format a key directory
//! takes ([`TestKey`]), whose signatures `openssl pkeyutl -verify` judges, and a
//! gateway-side test client speaking the protocol over rustls ([`Client`]).

// Only keyless_server.rs takes these in; the other binaries would warn about the re-exports.
#![allow(unused_imports)]

mod client;
mod keys;
mod load;
mod server;
pub mod softhsm;

pub use client::*;
pub use keys::*;
pub use load::*;
pub use server::*;

/// The codec the client builds frames with, through the key server crate.
pub use keyserver::keyless::{self, ErrorCode, KeySelector, Message, Opcode, Ski};
