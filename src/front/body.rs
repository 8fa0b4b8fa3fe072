//! Request bodies on the front door: relayed to an upstream as they arrive, or read and
//! dropped after an answer so the connection can carry the next request.
//!
//! A body is delimited exactly (its `Content-Length`, or the end of its last chunk and
//! trailers), so bytes after it stay in the buffer as the next, pipelined request. Chunked
//! bodies are relayed verbatim. The whole body must arrive within the body deadline.

use bytes::{Buf, BytesMut};
use pingora::protocols::Stream;
use tokio::io::AsyncReadExt;
use tokio::time::Instant;

use crate::protocol::chunked::ChunkScanner;
use crate::protocol::failure::UpstreamFailure;
use crate::protocol::hygiene::BodyFraming;
use crate::upstream::http1;
use crate::upstream::pool::Conn;

/// An answered request's body is read and dropped up to this size to keep its connection; a
/// larger one ends the connection instead (nginx's `lingering_close` does the same).
pub const DISCARD_LIMIT: u64 = 1 << 20;
/// Reads ask for at least this much room in the buffer.
const READ_CHUNK: usize = 16 * 1024;

/// Why a body did not arrive whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    /// The client closed or reset the connection.
    ClientGone,
    /// The body deadline passed.
    Timeout,
    /// A chunked body that does not follow the chunk grammar.
    Malformed,
    /// More than [`DISCARD_LIMIT`] to drop.
    TooLarge,
    /// Writing it to the upstream failed.
    Upstream(UpstreamFailure),
}

/// Where a body goes.
pub enum Sink<'a> {
    /// To an upstream, each write within its timeout.
    Upstream(&'a mut Conn, std::time::Duration),
    /// Nowhere (an answered request): at most [`DISCARD_LIMIT`] bytes.
    Drop,
}

/// Moves the body that starts at the front of `buf` to `sink`, reading the rest from `client`.
pub async fn relay(
    client: &mut Stream,
    buf: &mut BytesMut,
    framing: BodyFraming,
    mut sink: Sink<'_>,
    deadline: Instant,
) -> Result<(), BodyError> {
    let mut left = match framing {
        BodyFraming::None => return Ok(()),
        BodyFraming::Length(n) => n,
        BodyFraming::Chunked => u64::MAX,
    };
    let mut scanner = ChunkScanner::default();
    let mut moved = 0u64;
    loop {
        let (take, done) = match framing {
            BodyFraming::Chunked => match scanner.scan(buf) {
                Ok(Some(n)) => (n, true),
                Ok(None) => (buf.len(), false),
                Err(_) => return Err(BodyError::Malformed),
            },
            _ => {
                let n = (buf.len() as u64).min(left) as usize;
                left -= n as u64;
                (n, left == 0)
            }
        };
        moved += take as u64;
        match &mut sink {
            Sink::Upstream(conn, timeout) if take > 0 => {
                http1::send(conn, &buf[..take], *timeout)
                    .await
                    .map_err(BodyError::Upstream)?;
            }
            Sink::Drop if moved > DISCARD_LIMIT => return Err(BodyError::TooLarge),
            _ => {}
        }
        buf.advance(take);
        if done {
            return Ok(());
        }
        if buf.capacity() - buf.len() < READ_CHUNK / 4 {
            buf.reserve(READ_CHUNK);
        }
        match tokio::time::timeout_at(deadline, client.read_buf(buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Err(BodyError::ClientGone),
            Ok(Ok(_)) => {}
            Err(_) => return Err(BodyError::Timeout),
        }
    }
}

/// The length of the body at the front of `buf` when all of it is there already.
pub fn buffered_len(buf: &[u8], framing: BodyFraming) -> Option<usize> {
    match framing {
        BodyFraming::None => Some(0),
        BodyFraming::Length(n) => usize::try_from(n).ok().filter(|&n| buf.len() >= n),
        BodyFraming::Chunked => ChunkScanner::default().scan(buf).ok().flatten(),
    }
}
