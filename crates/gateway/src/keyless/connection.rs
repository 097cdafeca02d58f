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
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_rustls::TlsConnector;

use super::KeylessError;

type Waiters = Arc<Mutex<HashMap<u32, oneshot::Sender<Message>>>>;

/// An open connection: the writer's queue and the waiters of the requests sent.
pub(super) struct Connection {
    requests: mpsc::Sender<Message>,
    waiters: Waiters,
    next_id: AtomicU32,
    open: Arc<AtomicBool>,
    /// Turns true when the key server's side has ended, or [`Connection::close`] was called.
    ended: Arc<watch::Sender<bool>>,
    addr: SocketAddr,
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
        Ok(Connection::over(tls, addr))
    }

    /// Carries requests over `stream`, a TLS session already established with the
    /// key server at `addr`: one it was dialled, or one it dialled in (the tunnel).
    pub(super) fn over<S>(stream: S, addr: SocketAddr) -> Connection
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (mut reader, mut writer) = tokio::io::split(stream);
        let (requests, mut queue) = mpsc::channel::<Message>(1024);
        let waiters: Waiters = Arc::default();
        let open = Arc::new(AtomicBool::new(true));
        let ended = Arc::new(watch::Sender::new(false));

        let (writer_open, mut writer_ended) = (open.clone(), ended.subscribe());
        tokio::spawn(async move {
            loop {
                let message = tokio::select! {
                    message = queue.recv() => message,
                    _ = writer_ended.wait_for(|ended| *ended) => None,
                };
                let Some(message) = message else { break };
                let Ok(bytes) = message.encode() else { continue };
                if writer.write_all(&bytes).await.is_err() {
                    break;
                }
            }
            writer_open.store(false, Ordering::Release);
            let _ = writer.shutdown().await;
        });

        let (reader_open, reader_waiters, reader_ended) = (open.clone(), waiters.clone(), ended.clone());
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
            reader_ended.send_replace(true);
        });
        Connection { requests, waiters, next_id: AtomicU32::new(1), open, ended, addr }
    }

    /// The key server's address.
    pub(super) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether it may still carry requests.
    pub(super) fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire) && !self.requests.is_closed()
    }

    /// Waits until the key server's side of the connection has ended.
    pub(super) async fn closed(&self) {
        let _ = self.ended.subscribe().wait_for(|ended| *ended).await;
    }

    /// Takes no more requests and closes the connection (close_notify).
    pub(super) fn close(&self) {
        self.open.store(false, Ordering::Release);
        // Requests waiting on it fail now (and go to the next server).
        self.waiters.lock().unwrap_or_else(PoisonError::into_inner).clear();
        self.ended.send_replace(true);
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
        // The reader marks the connection closed before it fails the waiters it has: a
        // waiter added after that would wait for ever, so it fails here, at once.
        if !self.open.load(Ordering::Acquire) {
            return Err(gone());
        }
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
