//! The sync protocol's framing for libp2p request-response: each message is a 4-byte big-endian
//! length followed by that many bytes of a `proto::sync` request or response. Lengths beyond
//! `proto::sync::MAX_MESSAGE` are refused before anything is allocated.
//!
//! An inbound request that does not decode is not an I/O error here: it reaches the event loop as
//! [`SyncRequest::Malformed`], so that the loop knows the peer, counts a strike and answers
//! `Error` code 1 (request-response does not report failed inbound reads).

use std::io;

use futures::prelude::*;
use libp2p::StreamProtocol;
use proto::sync::{Request, Response, MAX_MESSAGE};

/// A sync request as read from a stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncRequest {
    /// A request that decoded.
    Valid(Request),
    /// Bytes that did not: why.
    Malformed(String),
}

/// The codec (stateless).
#[derive(Clone, Copy, Debug, Default)]
pub struct SyncCodec;

async fn read_frame<T: AsyncRead + Unpin + Send>(io: &mut T) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_MESSAGE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("sync message of {len} bytes exceeds the limit of {MAX_MESSAGE}"),
        ));
    }
    let mut buf = vec![0u8; len];
    io.read_exact(&mut buf).await?;
    Ok(buf)
}

async fn write_frame<T: AsyncWrite + Unpin + Send>(io: &mut T, body: &[u8]) -> io::Result<()> {
    if body.len() > MAX_MESSAGE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "sync message exceeds the limit",
        ));
    }
    io.write_all(&(body.len() as u32).to_be_bytes()).await?;
    io.write_all(body).await?;
    io.close().await
}

fn invalid(e: proto::sync::WireError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl libp2p::request_response::Codec for SyncCodec {
    type Protocol = StreamProtocol;
    type Request = SyncRequest;
    type Response = Response;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<SyncRequest>
    where
        T: AsyncRead + Unpin + Send,
    {
        match read_frame(io).await {
            Ok(body) => Ok(match Request::from_bytes(&body) {
                Ok(r) => SyncRequest::Valid(r),
                Err(e) => SyncRequest::Malformed(e.to_string()),
            }),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                Ok(SyncRequest::Malformed(e.to_string()))
            }
            Err(e) => Err(e),
        }
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Response>
    where
        T: AsyncRead + Unpin + Send,
    {
        Response::from_bytes(&read_frame(io).await?).map_err(invalid)
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: SyncRequest,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        match req {
            SyncRequest::Valid(r) => write_frame(io, &r.to_bytes()).await,
            SyncRequest::Malformed(_) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a malformed request is never sent",
            )),
        }
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Response,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &res.to_bytes()).await
    }
}
