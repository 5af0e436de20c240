//! The capability call trace: what `webhook-host plugin test` prints.

/// Records one capability call at debug level under the target
/// `webhook_host::trace`. Never given secret values or bodies.
macro_rules! trace_call {
    ($($arg:tt)*) => {
        tracing::debug!(target: "webhook_host::trace", $($arg)*)
    };
}
pub(crate) use trace_call;
