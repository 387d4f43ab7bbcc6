//! A cap on the TCP connections the gRPC server holds at once.
//!
//! The other limits bound the work a connection may ask for (calls in flight, streams per
//! connection, watch streams); this one bounds the sockets, each costing a file descriptor and
//! buffers even when idle. A connection past the cap is closed as soon as it is accepted, before
//! any TLS handshake, and counted (`ledger_connections_refused_total`).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_stream::Stream;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// Connections the server holds, and how many it accepted and refused.
#[derive(Debug)]
pub struct ConnectionCap {
    open: Arc<Semaphore>,
    max: usize,
    accepted: AtomicU64,
    refused: AtomicU64,
}

impl ConnectionCap {
    /// At most `max` connections at once.
    pub fn new(max: usize) -> ConnectionCap {
        ConnectionCap {
            open: Arc::new(Semaphore::new(max)),
            max,
            accepted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.max - self.open.available_permits()
    }

    /// Connections accepted under the cap, since start: a count that climbs with a steady
    /// number open means peers or clients reconnecting (a handshake each).
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Connections closed at once for being past the cap, since start.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// The accepted connections of `listener` that fit under the cap, with TCP_NODELAY set
    /// (tonic sets it only on listeners it binds itself).
    pub fn incoming(
        self: Arc<Self>,
        listener: TcpListener,
    ) -> impl Stream<Item = io::Result<CappedConnection>> {
        futures_util::stream::unfold((self, listener), |(cap, listener)| async move {
            let accepted = loop {
                let (stream, peer) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    // Out of descriptors and the like: tonic logs it and accepts again; a short
                    // pause keeps a lasting error from spinning.
                    Err(error) => {
                        tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                        break Err(error);
                    }
                };
                match cap.open.clone().try_acquire_owned() {
                    Ok(permit) => {
                        cap.accepted.fetch_add(1, Ordering::Relaxed);
                        if let Err(error) = stream.set_nodelay(true) {
                            tracing::debug!(%peer, %error, "TCP_NODELAY not set");
                        }
                        break Ok(CappedConnection {
                            stream,
                            _permit: permit,
                        });
                    }
                    Err(_) => {
                        let refused = cap.refused.fetch_add(1, Ordering::Relaxed) + 1;
                        // Once per power of two, so that a flood does not flood the log too.
                        if refused.is_power_of_two() {
                            tracing::warn!(
                                %peer,
                                max = cap.max,
                                refused,
                                "connection cap reached: closing new connections"
                            );
                        }
                    }
                }
            };
            Some((accepted, (cap, listener)))
        })
    }
}

const ACCEPT_ERROR_PAUSE: std::time::Duration = std::time::Duration::from_millis(10);

/// An accepted TCP connection holding its place under the cap until it is dropped.
#[derive(Debug)]
pub struct CappedConnection {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
}

impl Connected for CappedConnection {
    // The same as a plain TcpStream's, so the TLS layer and the auth layer see what they expect.
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for CappedConnection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for CappedConnection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio_stream::StreamExt;

    use super::*;

    /// The issue #15 tail: answers on a socket with Nagle on wait for the other side's delayed
    /// ACK, 40 ms on Linux. With TCP_NODELAY off on accepted sockets, a one-client run showed
    /// 7–8 calls of 42–48 ms in 20 s (docs/performance.md, "The tail").
    #[tokio::test]
    async fn accepted_connections_have_nagle_off_and_count_under_the_cap() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cap = Arc::new(ConnectionCap::new(1));
        let mut incoming = Box::pin(cap.clone().incoming(listener));
        let _client = TcpStream::connect(addr).await.unwrap();
        let accepted = tokio::time::timeout(Duration::from_secs(10), incoming.next())
            .await
            .expect("accepted within 10 s")
            .expect("a connection")
            .expect("accepted");
        assert!(accepted.stream.nodelay().unwrap(), "TCP_NODELAY is off");
        assert_eq!(cap.open(), 1);
        drop(accepted);
        assert_eq!(cap.open(), 0);
    }
}
