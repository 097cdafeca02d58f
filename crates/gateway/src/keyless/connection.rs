//! One mTLS connection to a key server, shared by every signature sent to it:
//! requests are written as they come, each with an id of its own, and the
//! responses, which may come in any order, are handed to their waiters by id.
//! A transport error or a malformed frame ends the connection and fails every
//! request waiting on it; the next request opens a new one.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use keyless::{Decoded, Message};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_rustls::TlsConnector;

use super::KeylessError;

type Waiters = Arc<Mutex<HashMap<u32, oneshot::Sender<Message>>>>;

/// An open connection: the writer's queue and the waiters of the requests sent.
pub(super) struct Connection {
    requests: mpsc::Sender<Message>,
    waiters: Waiters,
    next_id: AtomicU32,
    open: Arc<AtomicBool>,
}

impl Connection {
    /// Connects (TCP, then the TLS handshake with the gateway's client certificate).
    pub(super) async fn open(
        addr: SocketAddr,
        name: ServerName<'static>,
        connector: &TlsConnector,
    ) -> Result<Connection, KeylessError> {
        let unavailable = |e: std::io::Error| KeylessError::Unavailable(format!("{addr}: {e}"));
        let tcp = TcpStream::connect(addr).await.map_err(unavailable)?;
        let _ = tcp.set_nodelay(true);
        let tls = connector.connect(name, tcp).await.map_err(unavailable)?;
        let (mut reader, mut writer) = tokio::io::split(tls);
        let (requests, mut queue) = mpsc::channel::<Message>(1024);
        let waiters: Waiters = Arc::default();
        let open = Arc::new(AtomicBool::new(true));

        let writer_open = open.clone();
        tokio::spawn(async move {
            while let Some(message) = queue.recv().await {
                let Ok(bytes) = message.encode() else { continue };
                if writer.write_all(&bytes).await.is_err() {
                    break;
                }
            }
            writer_open.store(false, Ordering::Release);
            let _ = writer.shutdown().await;
        });

        let (reader_open, reader_waiters) = (open.clone(), waiters.clone());
        tokio::spawn(async move {
            let mut buf = Vec::with_capacity(4096);
            let mut chunk = [0u8; 8192];
            'read: loop {
                match reader.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
                loop {
                    match keyless::decode(&buf) {
                        Ok(Decoded::Complete { message, consumed }) => {
                            buf.drain(..consumed);
                            let waiter =
                                reader_waiters.lock().unwrap_or_else(PoisonError::into_inner).remove(&message.id);
                            if let Some(waiter) = waiter {
                                let _ = waiter.send(message);
                            }
                        }
                        Ok(Decoded::Incomplete { .. }) => break,
                        Err(e) => {
                            tracing::warn!(server = %addr, error = %e, "the key server sent a malformed frame; connection closed");
                            break 'read;
                        }
                    }
                }
            }
            reader_open.store(false, Ordering::Release);
            // Every request still waiting fails now: its sender is dropped.
            reader_waiters.lock().unwrap_or_else(PoisonError::into_inner).clear();
        });
        Ok(Connection { requests, waiters, next_id: AtomicU32::new(1), open })
    }

    /// Whether it may still carry requests.
    pub(super) fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire) && !self.requests.is_closed()
    }

    /// Sends `message` (its id replaced by one of this connection's) and waits for the answer.
    pub(super) async fn call(&self, mut message: Message) -> Result<Message, KeylessError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        message.id = id;
        let (tx, rx) = oneshot::channel();
        self.waiters.lock().unwrap_or_else(PoisonError::into_inner).insert(id, tx);
        // A request given up on (a timeout drops this future) leaves no waiter behind.
        let _waiting = Waiting { waiters: &self.waiters, id };
        let gone = || KeylessError::Unavailable("the connection to the key server closed".to_owned());
        self.requests.send(message).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())
    }
}

/// Removes a request's waiter when its caller is done with it, answered or not.
struct Waiting<'a> {
    waiters: &'a Waiters,
    id: u32,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.waiters.lock().unwrap_or_else(PoisonError::into_inner).remove(&self.id);
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.open.store(false, Ordering::Release);
    }
}
