//! A guest's stderr: the last bytes it wrote. A plugin may write as much as it likes (a
//! flood costs only its own CPU time, under its deadline) and is never refused a write:
//! a full pipe made Rust's `eprintln!` panic, so a plugin that wrote a line per batch
//! began to fail every record once it had written 16 KiB. The tail is what is kept
//! because a panic message is the last thing a guest writes.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

/// Keeps the last `capacity` bytes written to it; clones share the buffer.
#[derive(Clone)]
pub struct TailPipe {
    capacity: usize,
    buffer: Arc<Mutex<VecDeque<u8>>>,
}

impl TailPipe {
    pub fn new(capacity: usize) -> Self {
        TailPipe { capacity, buffer: Arc::new(Mutex::new(VecDeque::with_capacity(capacity))) }
    }

    /// The bytes kept, oldest first.
    pub fn contents(&self) -> Vec<u8> {
        self.buffer.lock().expect("the tail's lock is never held across a panic").iter().copied().collect()
    }

    fn push(&self, bytes: &[u8]) {
        let mut buffer = self.buffer.lock().expect("the tail's lock is never held across a panic");
        let bytes = &bytes[bytes.len().saturating_sub(self.capacity)..];
        let over = (buffer.len() + bytes.len()).saturating_sub(self.capacity);
        buffer.drain(..over);
        buffer.extend(bytes);
    }
}

impl OutputStream for TailPipe {
    fn write(&mut self, bytes: bytes::Bytes) -> Result<(), StreamError> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(1 << 20)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for TailPipe {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for TailPipe {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl IsTerminal for TailPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for TailPipe {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_bytes_and_never_refuses() {
        let tail = TailPipe::new(8);
        tail.push(b"abc");
        tail.push(b"defghij");
        assert_eq!(tail.contents(), b"cdefghij");
        tail.push(&[b'x'; 100]);
        assert_eq!(tail.contents(), [b'x'; 8]);
    }
}
