//! A guest's stdout and stderr, turned into host log lines tagged with the
//! plugin and the event id.
//!
//! Output is split into lines; each line is capped, and so is the total per
//! instance, so a chatty plugin cannot flood the log. The last stderr
//! lines are kept: a Rust guest's panic message lands there just before its
//! trap, and the host puts it into the event's error.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

const MAX_LINE: usize = 4096;
const MAX_TOTAL: usize = 64 * 1024;
/// Lines of stderr kept for the error message of a trap.
const RECENT_LINES: usize = 3;

/// Shared by one instance's stdout and stderr.
#[derive(Clone)]
pub struct GuestOutput {
    plugin: Arc<str>,
    event_id: Arc<str>,
    stream: &'static str,
    /// Bytes logged so far by this instance, across both streams.
    total: Arc<AtomicUsize>,
    /// The last few lines written to this stream, oldest first.
    recent: Arc<Mutex<VecDeque<String>>>,
}

impl GuestOutput {
    /// stdout and stderr writers for one instance.
    pub fn pair(plugin: &Arc<str>, event_id: &Arc<str>) -> (Self, Self) {
        let total = Arc::new(AtomicUsize::new(0));
        let make = |stream| Self {
            plugin: plugin.clone(),
            event_id: event_id.clone(),
            stream,
            total: total.clone(),
            recent: Arc::default(),
        };
        (make("stdout"), make("stderr"))
    }

    /// The last lines written, joined, without the runtime's backtrace hint:
    /// for a Rust guest that panicked, where and why.
    pub fn recent_lines(&self) -> Option<String> {
        let recent = self.recent.lock().ok()?;
        let lines: Vec<&str> = recent
            .iter()
            .map(String::as_str)
            .filter(|line| !line.starts_with("note: run with `RUST_BACKTRACE"))
            .collect();
        (!lines.is_empty()).then(|| lines.join(" / "))
    }

    fn emit(&self, bytes: &[u8]) {
        let line = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_LINE)]);
        let line = line.trim_end();
        if line.is_empty() {
            return;
        }
        if let Ok(mut recent) = self.recent.lock() {
            if recent.len() == RECENT_LINES {
                recent.pop_front();
            }
            recent.push_back(line.to_string());
        }
        let before = self.total.fetch_add(bytes.len(), Ordering::Relaxed);
        if before >= MAX_TOTAL {
            return;
        }
        if before + bytes.len() >= MAX_TOTAL {
            tracing::warn!(plugin = %self.plugin, event_id = %self.event_id, "guest output past {MAX_TOTAL} bytes is dropped");
        }
        tracing::info!(plugin = %self.plugin, event_id = %self.event_id, stream = self.stream, "guest: {line}");
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(LineWriter {
            output: self.clone(),
            buf: Vec::new(),
        })
    }
}

struct LineWriter {
    output: GuestOutput,
    buf: Vec<u8>,
}

impl AsyncWrite for LineWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.buf.extend_from_slice(data);
        while let Some(end) = self.buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=end).collect();
            self.output.emit(&line);
        }
        if self.buf.len() > MAX_LINE {
            let line = std::mem::take(&mut self.buf);
            self.output.emit(&line);
        }
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let rest = std::mem::take(&mut self.buf);
        self.output.emit(&rest);
        Poll::Ready(Ok(()))
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        let rest = std::mem::take(&mut self.buf);
        self.output.emit(&rest);
    }
}
