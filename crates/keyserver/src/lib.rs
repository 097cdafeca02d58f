//! A Keyless SSL key server: the private keys of a TLS site stay here, and
//! gateways that hold only the certificates ask for each handshake's signature
//! over mutual TLS, in the gokeyless wire protocol (`shared/keyless-protocol.md`).
//!
//! What the crate owns, one idea per module:
//! - [`config`]: the `gatehouse keyserver` file (`listen`, `certificate`,
//!   `trust`, `metrics`, `[[keys]]`), read strictly, paths resolved.
//! - [`keys`]: key directories (PKCS#1, SEC1, PKCS#8; PEM or DER) loaded into a
//!   [`KeyStore`] indexed by SKI, computed from the public key as the spec says.
//! - `pkcs11`: keys in PKCS#11 tokens (cryptoki): found at start, indexed in
//!   the same store, used in the token through a pool of sessions.
//! - `operation`: one private-key operation of the protocol (RSA PKCS#1 v1.5
//!   and PSS over a digest, ECDSA over a digest, Ed25519 over a message).
//! - `dispatch`: a request to its answer: the protocol's checks and error codes.
//! - `tls`: the mTLS server side, and why a handshake was refused
//!   ([`HandshakeRefusal`]).
//! - `connection`: one connection: many requests in flight, answered in
//!   completion order through one writer, at most 1024 outstanding, idle close.
//! - `metrics`: Prometheus counters and histograms and the `/metrics` listener.
//! - `tunnel`: tunnel mode, the key server dialling out to gateways'
//!   `keyless_tunnel` listeners and serving requests over those connections.
//! - `server`: the listener (or the tunnels) that ties them together ([`Server`]).
//!
//! # Why by hand
//! No maintained Rust crate speaks the Keyless protocol, and gokeyless, the
//! reference key server, is published under a proprietary services agreement:
//! none of its code, tests or test data may be used. This server is written
//! from the spec page and RFCs on top of the `keyless` codec crate, rustls and
//! aws-lc-rs; the protocol part is small (frame in, operation, frame out).
//!
//! # Unsafe code
//! One module, `raw_rsa`, calls AWS-LC (through aws-lc-sys) for what aws-lc-rs
//! does not offer: raw RSA decryption (opcode 0x01) and PKCS#1 v1.5 signatures
//! of MD5-SHA1, SHA-1 and SHA-224 digests (0x02–0x04) with key files. Its docs
//! say why; the rest of the crate has no unsafe code. Keys in a token do the
//! same through the token (`CKM_RSA_X_509`, and `CKM_RSA_PKCS` over a
//! DigestInfo built here).

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod config;
mod connection;
mod dispatch;
pub mod keys;
mod metrics;
mod operation;
mod pkcs11;
mod raw_rsa;
mod server;
mod tls;
mod tunnel;

pub use config::{Config, ConfigError, KeySource, Mode, PinSource, Pkcs11Keys, Trust, TunnelTarget};
pub use keys::{Key, KeyError, KeyOrigin, KeyStore, KeyType};
pub use pkcs11::TokenError;
pub use pkcs11::ca_key;
pub use server::{Prepared, Server, ServerError};
pub use tls::{HandshakeRefusal, TlsError};

/// The codec this server speaks, for clients and tests that build frames.
pub use keyless;
