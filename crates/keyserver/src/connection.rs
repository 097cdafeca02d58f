//! One gateway connection after its handshake: frames are read and decoded in
//! order, each request is answered as soon as its answer is ready (pings and
//! refusals at once, private-key operations in tasks of their own, so several
//! run at the same time on the runtime's worker threads), and every response
//! goes through one writer task, in completion order.
//!
//! Operations with key files run as ordinary tasks, not `spawn_blocking`: the
//! hand-off to a blocking thread costs more than an ECDSA signature, and
//! signing is this server's whole work. Nor is there a task per operation: the
//! operations decoded from one read (a pipelining gateway sends many) are
//! split over at most one task per core, each running its share in turn, and
//! the responses waiting are written together. The longest operation (an RSA-4096
//! signature, a few milliseconds) delays the tasks queued on its worker thread
//! by that much, while the runtime's other workers go on serving. Operations
//! with keys in a PKCS#11 token do go to `spawn_blocking`: a token's call can
//! take as long as the token likes (a network HSM, a session being waited for).
//!
//! - At most [`MAX_OUTSTANDING`] requests are outstanding (read, response not
//!   yet written); beyond that reading pauses, so a fast client cannot queue
//!   unbounded work.
//! - [`IDLE`] without a request closes the connection (pings count).
//! - A malformed frame closes the connection without a reply and is logged
//!   once with the peer; a frame of another major version is answered with
//!   0x04 (version mismatch), then the connection is closed. Responses to the
//!   requests already being worked on are written before the close.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use keyless::{Decoded, ErrorCode, Malformed, Message};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, WriteHalf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::Instant;

use crate::dispatch::{Answer, Operation, dispatch};
use crate::server::Shared;

/// The most requests a connection may have outstanding (the protocol's customary cap).
pub(crate) const MAX_OUTSTANDING: usize = 1024;

/// The most key-file operations started together (see `run_batch`).
const BATCH_MAX: usize = 64;

/// How long a connection may go without a request.
pub(crate) const IDLE: Duration = Duration::from_secs(30);

/// A response frame, and the outstanding-request slot it frees once written.
type Outgoing = (Vec<u8>, OwnedSemaphorePermit);

/// Why reading stopped.
#[derive(Debug)]
pub(crate) enum End {
    /// The gateway closed its side.
    Closed,
    /// No request for [`IDLE`].
    Idle,
    /// [`MAX_OUTSTANDING`] responses unwritten for [`IDLE`]: the gateway does not read.
    Stalled,
    /// Reading failed.
    Failed(std::io::Error),
    /// A malformed frame.
    Malformed(Malformed),
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            End::Closed => f.write_str("the gateway closed the connection"),
            End::Idle => write!(f, "no request for {} s", IDLE.as_secs()),
            End::Stalled => f.write_str("the gateway does not read its answers"),
            End::Failed(e) => write!(f, "reading failed: {e}"),
            End::Malformed(why) => write!(f, "malformed frame: {why}"),
        }
    }
}

/// Serves requests on `stream` until the gateway closes it, goes idle or
/// sends a malformed frame; then writes what is still being answered and closes.
/// Says why it ended. `on_first_request` runs when the first frame has been read
/// (in tunnel mode, the proof that the gateway accepted this key server).
pub(crate) async fn serve<S>(
    stream: S,
    peer: SocketAddr,
    shared: Arc<Shared>,
    on_first_request: Option<Box<dyn FnOnce() + Send>>,
) -> End
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut reader, writer) = tokio::io::split(stream);
    // Unbounded, yet bounded by the permits: a frame is queued only with one.
    let (tx, rx) = mpsc::unbounded_channel::<Outgoing>();
    let writing = tokio::spawn(write_frames(writer, rx));
    let slots = Arc::new(Semaphore::new(MAX_OUTSTANDING));
    let mut buf = BytesMut::with_capacity(keyless::MIN_FRAME_LEN * 4);
    let mut deadline = Instant::now() + IDLE;
    let mut on_first_request = on_first_request;
    // Key-file operations decoded from one read, run together (see `run_batch`).
    let mut batch: Vec<(Operation, OwnedSemaphorePermit)> = Vec::new();
    let workers = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let end = loop {
        let request = match keyless::decode(&buf) {
            Ok(Decoded::Complete { message, consumed }) => {
                buf.advance(consumed);
                message
            }
            Ok(Decoded::Incomplete { needed }) => {
                // Everything read so far is decoded: its operations start before waiting for more.
                run_batch(&mut batch, &tx, &shared, workers);
                buf.reserve(needed.saturating_sub(buf.len()));
                match tokio::time::timeout_at(deadline, reader.read_buf(&mut buf)).await {
                    Err(_) => break End::Idle,
                    Ok(Ok(0)) => break End::Closed,
                    Ok(Ok(_)) => continue,
                    Ok(Err(e)) => break End::Failed(e),
                }
            }
            Err(Malformed::Version { major, minor, id }) => {
                tracing::warn!(%peer, id, version = format!("{major}.{minor}"), "frame of another protocol version; answered 0x04, closing");
                if let Ok(slot) = slots.clone().acquire_owned().await {
                    send(&tx, Message::error(id, ErrorCode::VersionMismatch), slot);
                }
                shared.metrics.answered("unknown", Err(ErrorCode::VersionMismatch));
                break End::Closed;
            }
            Err(malformed) => break End::Malformed(malformed),
        };
        deadline = Instant::now() + IDLE;
        if let Some(first) = on_first_request.take() {
            first();
        }
        // Waiting here for a slot is what pauses reading at the cap. Slots come
        // back as responses are written, so a gateway that stops reading its
        // answers is dropped after IDLE rather than held forever.
        if slots.available_permits() == 0 {
            // The batch holds slots: it must run for any to come back.
            run_batch(&mut batch, &tx, &shared, workers);
        }
        let slot = match tokio::time::timeout(IDLE, slots.clone().acquire_owned()).await {
            Ok(Ok(slot)) => slot,
            Ok(Err(_)) => break End::Closed,
            Err(_) => break End::Stalled,
        };
        match dispatch(&shared.keys, &shared.metrics, request) {
            Answer::Now(response) => send(&tx, response, slot),
            Answer::Operation(operation) if operation.in_token() => {
                let (tx, shared) = (tx.clone(), shared.clone());
                tokio::task::spawn_blocking(move || send(&tx, operation.run(&shared.metrics), slot));
            }
            Answer::Operation(operation) => {
                batch.push((operation, slot));
                if batch.len() >= BATCH_MAX {
                    run_batch(&mut batch, &tx, &shared, workers);
                }
            }
        }
    };
    run_batch(&mut batch, &tx, &shared, workers);
    match &end {
        End::Closed => tracing::debug!(%peer, "gateway closed the connection"),
        End::Idle => tracing::debug!(%peer, idle_secs = IDLE.as_secs(), "idle connection closed"),
        End::Stalled => tracing::warn!(%peer, "the gateway does not read its answers; connection closed"),
        End::Failed(e) => tracing::debug!(%peer, error = %e, "reading from the gateway failed"),
        End::Malformed(why) => {
            shared.metrics.malformed_frame();
            tracing::warn!(%peer, error = %why, "malformed frame; connection closed without a reply");
        }
    }
    // The writer ends once every sender is gone: this one, and the operations' when they finish.
    drop(tx);
    let mut writing = writing;
    if tokio::time::timeout(IDLE, &mut writing).await.is_err() {
        // The gateway reads nothing more; its answers are given up.
        writing.abort();
    }
    end
}

/// Starts the operations of `batch`, split over at most `workers` tasks that each
/// run their share one after another: a task per operation costs more than an
/// ECDSA signature, and a gateway that pipelines sends many in one read.
fn run_batch(
    batch: &mut Vec<(Operation, OwnedSemaphorePermit)>,
    tx: &mpsc::UnboundedSender<Outgoing>,
    shared: &Arc<Shared>,
    workers: usize,
) {
    if batch.is_empty() {
        return;
    }
    let share = batch.len().div_ceil(workers.max(1));
    while !batch.is_empty() {
        let part: Vec<_> = batch.drain(..share.min(batch.len())).collect();
        let (tx, shared) = (tx.clone(), shared.clone());
        tokio::spawn(async move {
            for (operation, slot) in part {
                send(&tx, operation.run(&shared.metrics), slot);
            }
        });
    }
}

fn send(tx: &mpsc::UnboundedSender<Outgoing>, response: Message, slot: OwnedSemaphorePermit) {
    let frame = response.encode().unwrap_or_else(|e| {
        // Only a response over 64 KiB, which no operation here makes.
        tracing::error!(id = response.id, error = %e, "response cannot be encoded; answering 0x08");
        Message::error(response.id, ErrorCode::Internal).encode().unwrap_or_default()
    });
    // The writer is gone only when the connection failed; the response has nowhere to go.
    let _ = tx.send((frame, slot));
}

/// Writes frames as they come, those already waiting in one write, then closes
/// the TLS session (close_notify) once every sender is gone.
async fn write_frames<W: AsyncWrite>(mut writer: WriteHalf<W>, mut rx: mpsc::UnboundedReceiver<Outgoing>) {
    // The frames waiting are written together: one TLS record for many responses.
    let mut out = Vec::with_capacity(16 * 1024);
    let mut slots = Vec::new();
    while let Some((frame, slot)) = rx.recv().await {
        out.extend_from_slice(&frame);
        slots.push(slot);
        while out.len() < 16 * 1024
            && let Ok((frame, slot)) = rx.try_recv()
        {
            out.extend_from_slice(&frame);
            slots.push(slot);
        }
        if writer.write_all(&out).await.is_err() || writer.flush().await.is_err() {
            return;
        }
        out.clear();
        slots.clear();
    }
    let _ = writer.shutdown().await;
}
