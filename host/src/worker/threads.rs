//! The threads events run on: a tokio runtime of their own, apart from the
//! HTTP threads, so a plugin burning CPU never delays intake handlers queued
//! behind its time slices.

/// The threads events run on, apart from the HTTP threads.
pub struct EventThreads(Option<tokio::runtime::Runtime>);

impl EventThreads {
    /// `threads` worker threads; 0 picks half the cores, at least one.
    pub fn start(threads: usize) -> std::io::Result<Self> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = if threads == 0 { (cores / 2).max(1) } else { threads };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("events")
            .enable_all()
            .build()?;
        Ok(Self(Some(runtime)))
    }

    pub fn handle(&self) -> &tokio::runtime::Handle {
        self.0.as_ref().expect("present until dropped").handle()
    }
}

impl Drop for EventThreads {
    fn drop(&mut self) {
        // Dropped from async code: a blocking shutdown would panic there.
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}
