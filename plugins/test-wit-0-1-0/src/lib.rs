//! A handler built against `webhook:plugin@0.1.0`, the contract before the
//! follow-ups: its `wit/plugin.wit` is that version, frozen. The host of
//! today must still load and run it (a minor version only adds). Each event
//! records `legacy <event id> attempt <n>` in `plugin_effects`.

// The generated bindings take many arguments in places; that is theirs.
#![allow(clippy::too_many_arguments)]

wit_bindgen::generate!({
    path: "wit",
    world: "handler",
});

use webhook::plugin::db;

struct Legacy;

impl Guest for Legacy {
    fn handle(event: Event) -> Result<Option<Vec<u8>>, HandlerError> {
        db::execute(
            "INSERT INTO plugin_effects (event_id) VALUES ($1)",
            &[db::Value::Text(format!(
                "legacy {} attempt {}",
                event.id, event.attempt
            ))],
        )
        .map(|_| None)
        .map_err(HandlerError::Fatal)
    }
}

export!(Legacy);
