//! `followups` and `attempt`: what an attempt leaves for the host to do
//! once it ends. Follow-ups are queued in the instance and stored by the
//! worker in the event's transaction ([`crate::inbox::Inbox::complete`]),
//! so they exist exactly when the attempt's writes do; a retry-after hint
//! shapes the delay when the attempt ends in `retry`.

use anyhow::Result;

use super::capability::{Capability, InstanceContext};
use super::services::Services;
pub use crate::inbox::event::FollowUp;
use crate::manifest::{Limits, Manifest};
use crate::wit::{attempt, followups};

/// Follow-ups one attempt may queue.
pub const MAX_PER_ATTEMPT: usize = 100;
/// The largest payload of one follow-up.
pub const MAX_PAYLOAD_BYTES: usize = 1 << 20;
/// The longest name.
pub const MAX_NAME_BYTES: usize = 64;
/// The longest delay a follow-up may ask for: 30 days.
pub const MAX_DELAY_MS: u64 = 30 * 24 * 3600 * 1000;

/// Checks a follow-up before it is queued.
pub fn check(name: &str, payload: &[u8], queued: usize) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME_BYTES {
        return Err(format!("a follow-up name has 1 to {MAX_NAME_BYTES} bytes"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(format!(
            "follow-up name {name:?}: use letters, digits, '-', '_' and '.'"
        ));
    }
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(format!(
            "follow-up {name}: the payload has {} bytes, at most {MAX_PAYLOAD_BYTES} are allowed",
            payload.len()
        ));
    }
    if queued >= MAX_PER_ATTEMPT {
        return Err(format!(
            "one attempt may queue at most {MAX_PER_ATTEMPT} follow-ups"
        ));
    }
    Ok(())
}

/// One instance's queued follow-ups.
#[derive(Default)]
pub struct FollowupsState {
    queued: Vec<FollowUp>,
}

impl FollowupsState {
    /// Hands the queue to the worker.
    pub fn take(&mut self) -> Vec<FollowUp> {
        std::mem::take(&mut self.queued)
    }
}

impl Capability for FollowupsState {
    type Plugin = ();

    fn prepare(_: &Manifest, _: &Limits, _: &Services) -> Result<()> {
        Ok(())
    }

    fn instance(_: &(), _: &mut InstanceContext<'_>) -> Self {
        Self::default()
    }
}

impl followups::Host for FollowupsState {
    async fn enqueue(&mut self, name: String, payload: Vec<u8>, delay_ms: u64) -> Result<(), String> {
        check(&name, &payload, self.queued.len())?;
        super::trace::trace_call!(
            "followups.enqueue {name} ({} bytes, in {delay_ms} ms)",
            payload.len()
        );
        // The same follow-up twice in one attempt is one.
        let followup = FollowUp {
            name,
            payload,
            delay_ms: delay_ms.min(MAX_DELAY_MS),
        };
        if !self
            .queued
            .iter()
            .any(|q| q.name == followup.name && q.payload == followup.payload)
        {
            self.queued.push(followup);
        }
        Ok(())
    }
}

/// One instance's retry-after hint.
#[derive(Default)]
pub struct AttemptState {
    retry_after_ms: Option<u64>,
}

impl AttemptState {
    /// The hint, if the plugin gave one.
    pub fn retry_after_ms(&self) -> Option<u64> {
        self.retry_after_ms
    }
}

impl Capability for AttemptState {
    type Plugin = ();

    fn prepare(_: &Manifest, _: &Limits, _: &Services) -> Result<()> {
        Ok(())
    }

    fn instance(_: &(), _: &mut InstanceContext<'_>) -> Self {
        Self::default()
    }
}

impl attempt::Host for AttemptState {
    async fn retry_after(&mut self, delay_ms: u64) {
        self.retry_after_ms = Some(delay_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_payloads_and_counts_are_bounded() {
        assert!(check("notice", b"{}", 0).is_ok());
        assert!(check("", b"", 0).is_err());
        assert!(check("a b", b"", 0).is_err());
        assert!(check(&"x".repeat(65), b"", 0).is_err());
        assert!(check("big", &vec![0; MAX_PAYLOAD_BYTES + 1], 0).is_err());
        assert!(check("many", b"", MAX_PER_ATTEMPT).is_err());
    }

    #[test]
    fn the_same_name_and_payload_is_the_same_follow_up() {
        let one = |name: &str, payload: &[u8]| FollowUp {
            name: name.into(),
            payload: payload.to_vec(),
            delay_ms: 0,
        };
        let a = one("notice", br#"{"avatar":"1"}"#).delivery_id();
        assert_eq!(a, one("notice", br#"{"avatar":"1"}"#).delivery_id());
        assert_ne!(a, one("notice", br#"{"avatar":"2"}"#).delivery_id());
        assert_ne!(a, one("cleanup", br#"{"avatar":"1"}"#).delivery_id());
        assert!(a.starts_with("followup:notice:"), "{a}");
    }
}
