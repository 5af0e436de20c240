fn main() -> std::process::ExitCode {
    keep_large_allocations_mapped();
    webhook_host::cli::main()
}

/// glibc serves a large allocation from its own mapping, returned to the
/// system when freed, but after the first such free it raises that
/// threshold (up to 32 MiB), so later large buffers — a plugin's big return
/// value, a large body — come from the heap and stay resident after use.
/// A fixed threshold keeps them mapped, and memory returns to its baseline
/// after a burst.
fn keep_large_allocations_mapped() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; called once, before
    // any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
    }
}
