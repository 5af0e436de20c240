//! The Telegram "your avatar is ready" notice: the message the bot sends
//! (Markdown text, two inline buttons), built here without the bindings so it
//! can be unit-tested natively.

use serde_json::{Value, json};

/// Escapes the characters legacy Markdown treats as markup.
fn escape_markdown(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '_' | '*' | '`' | '[') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The `sendMessage` request body for avatar `avatar_id` named `name`.
pub fn completion_message(chat_id: &str, avatar_id: &str, name: &str, training_type: &str) -> Value {
    let kind = match training_type {
        "style" => "Стилевой",
        _ => "Портретный",
    };
    let text = format!(
        "🎉 *Ваш аватар «{}» готов!*\n\nТип: {kind}\n\nТеперь можно создавать изображения с вашим аватаром.",
        escape_markdown(name)
    );
    json!({
        "chat_id": chat_id,
        "text": text,
        "parse_mode": "Markdown",
        "reply_markup": {
            "inline_keyboard": [
                [{"text": "🎭 Мои аватары", "callback_data": "avatar_gallery"}],
                [{"text": "🎨 Создать изображение", "callback_data": format!("avatar_generate:{avatar_id}")}],
            ]
        }
    })
}

/// What to do about a Bot API answer.
#[derive(Debug, PartialEq, Eq)]
pub enum Delivery {
    Sent,
    /// Worth another attempt later (rate limit, server error); a 429 says
    /// how long to wait in `parameters.retry_after`.
    Transient {
        why: String,
        retry_after_secs: Option<u64>,
    },
    /// Will never work for this chat (blocked bot, unknown chat, bad request).
    Permanent(String),
}

/// Classifies a Bot API response by status and body.
pub fn classify(status: u16, body: &[u8]) -> Delivery {
    let answer = serde_json::from_slice::<Value>(body).unwrap_or(Value::Null);
    let description = answer
        .get("description")
        .and_then(Value::as_str)
        .unwrap_or_default();
    match status {
        200..=299 => Delivery::Sent,
        429 | 500..=599 => Delivery::Transient {
            why: format!("Telegram answered {status} {description}"),
            retry_after_secs: answer.pointer("/parameters/retry_after").and_then(Value::as_u64),
        },
        _ => Delivery::Permanent(format!("Telegram answered {status} {description}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_has_text_and_both_buttons() {
        let m = completion_message("100200300", "a1", "My_avatar*", "style");
        assert_eq!(m["chat_id"], "100200300");
        assert_eq!(m["parse_mode"], "Markdown");
        let text = m["text"].as_str().unwrap();
        assert!(text.contains("My\\_avatar\\*"), "{text}");
        assert!(text.contains("Стилевой"));
        let rows = m["reply_markup"]["inline_keyboard"].as_array().unwrap();
        assert_eq!(rows[0][0]["callback_data"], "avatar_gallery");
        assert_eq!(rows[0][0]["text"], "🎭 Мои аватары");
        assert_eq!(rows[1][0]["callback_data"], "avatar_generate:a1");
        assert_eq!(rows[1][0]["text"], "🎨 Создать изображение");
    }

    #[test]
    fn answers_are_classified() {
        assert_eq!(classify(200, br#"{"ok":true}"#), Delivery::Sent);
        assert!(matches!(
            classify(502, b""),
            Delivery::Transient {
                retry_after_secs: None,
                ..
            }
        ));
        let limited = br#"{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 7","parameters":{"retry_after":7}}"#;
        match classify(429, limited) {
            Delivery::Transient {
                why,
                retry_after_secs,
            } => {
                assert_eq!(retry_after_secs, Some(7));
                assert!(why.contains("Too Many Requests"), "{why}");
            }
            other => panic!("{other:?}"),
        }
        match classify(
            403,
            br#"{"ok":false,"description":"Forbidden: bot was blocked by the user"}"#,
        ) {
            Delivery::Permanent(m) => assert!(m.contains("blocked")),
            other => panic!("{other:?}"),
        }
    }
}
