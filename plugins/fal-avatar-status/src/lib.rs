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
//! On completion it copies FAL's files into our storage (FAL's URLs expire),
//! deletes the training photos except the first (configurable), sends the
//! user one Telegram notice, and marks the avatar completed. The order keeps
//! the database write last and short (read, call out, write), and every side
//! effect is safe to repeat: files go to stable keys (an existing copy is not
//! fetched again), photo deletes are idempotent, and the notice is guarded by
//! a kv marker, so a redelivery or a retry never sends it twice.
//!
//! The avatar is found by `avatars.fal_request_id = request_id`. An unknown
//! request id is logged and the event is done: retrying cannot make it known.
//! A body that is not one of the shapes above is `invalid` and never retried.
//!
//! Its `reconcile` schedule (see [`reconcile`]) finds avatars whose webhook
//! never came by asking FAL's queue API, and applies the answer with the
//! same code.

// The generated bindings take many arguments in places; that is theirs.
#![allow(clippy::too_many_arguments)]

mod avatar;
mod body;
mod notice;
mod reconcile;
mod telegram;

wit_bindgen::generate!({
    path: "../../wit",
    world: "scheduled-handler",
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

export!(FalAvatarStatus);
