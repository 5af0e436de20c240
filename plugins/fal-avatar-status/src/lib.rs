//! `fal-avatar-status`: applies FAL AI training-status webhooks to the bot's
//! `avatars` table.
//!
//! The host has already verified the signature and stored the event; this
//! plugin interprets the body:
//! - FAL bodies: `status` = `OK` (training finished, `payload` holds the LoRA
//!   and config files) or `ERROR` (`error` says why); `payload_error` means FAL
//!   could not serialise the result.
//! - Legacy bodies: `queued`, `in_progress` (optional `progress`), `completed`,
//!   `failed`, `cancelled`.
//!
//! On completion it copies FAL's files into our storage (FAL's URLs expire)
//! and marks the avatar completed; the user's Telegram notice and deleting
//! the training photos but the first (configurable) are follow-ups
//! ([`effects`]) stored with that commit and run after it, each with its own
//! retries. The order keeps the database write last and short (read, call
//! out, write): files go to stable keys (an existing copy is not fetched
//! again), and a follow-up is one per avatar and request, so a redelivery,
//! a retry or a replay never sends a second notice.
//!
//! The avatar is found by `avatars.fal_request_id = request_id`. FAL may
//! call before the bot has stored it: an unknown request id is retried a
//! few times at short intervals (`unknown_request_attempts`,
//! `unknown_request_retry_ms`), then logged and done. A body that is not
//! one of the shapes above is `invalid` and never retried.
//!
//! Its `reconcile` schedule (see [`reconcile`]) finds avatars whose webhook
//! never came by asking FAL's queue API, and applies the answer with the
//! same code.

// The generated bindings take many arguments in places; that is theirs.
#![allow(clippy::too_many_arguments)]

mod avatar;
mod body;
mod effects;
mod notice;
mod reconcile;
mod telegram;

wit_bindgen::generate!({
    path: "../../wit",
    world: "scheduled-followup-handler",
});

struct FalAvatarStatus;

impl Guest for FalAvatarStatus {
    fn handle(event: Event) -> Result<Option<Vec<u8>>, HandlerError> {
        avatar::handle(event)
    }
}

impl exports::webhook::plugin::scheduled::Guest for FalAvatarStatus {
    fn run_scheduled(name: String) -> Result<(), HandlerError> {
        match name.as_str() {
            "reconcile" => reconcile::run(),
            other => Err(HandlerError::Invalid(format!("no schedule named {other:?}"))),
        }
    }
}

impl exports::webhook::plugin::followup::Guest for FalAvatarStatus {
    fn run_followup(task: exports::webhook::plugin::followup::Task) -> Result<(), HandlerError> {
        effects::run(&task.name, &task.payload)
    }
}

export!(FalAvatarStatus);
