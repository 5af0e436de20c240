//! The console's page frame and what every page shares: the layout, the
//! notice an action leaves behind, the redirect after a form, the error
//! page. Markup comes from `maud` templates, which escape every
//! interpolation unless told otherwise: no page escapes by hand.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;

/// Which navigation entry a page belongs to.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Dashboard,
    Events,
    Plugins,
}

/// A page's `<head>`: its title, the console's stylesheet and, for pages
/// behind sign-in, its script.
pub fn head(title: &str, script: bool) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · webhook-host" }
            link rel="stylesheet" href="/admin/assets/console.css";
            @if script {
                script src="/admin/assets/console.js" defer {}
            }
        }
    }
}

/// A whole page: head, navigation, an optional notice, the body.
pub fn layout(title: &str, section: Section, notice: Option<&str>, body: Markup) -> Html<String> {
    let link = |href: &str, label: &str, this: Section| {
        html! { a href=(href) aria-current=[(section == this).then_some("page")] { (label) } }
    };
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            (head(title, true))
            body {
                header {
                    strong { "webhook-host" }
                    nav {
                        (link("/admin/", "Dashboard", Section::Dashboard))
                        (link("/admin/events", "Events", Section::Events))
                        (link("/admin/plugins", "Plugins", Section::Plugins))
                    }
                    form method="post" action="/admin/logout" {
                        button type="submit" class="quiet" { "Sign out" }
                    }
                }
                main {
                    h1 { (title) }
                    @if let Some(notice) = notice.filter(|n| !n.is_empty()) {
                        p class="notice" role="status" { (notice) }
                    }
                    (body)
                }
            }
        }
    };
    Html(page.into_string())
}

/// `?notice=…`: what the last action did, shown once on the page it led to.
#[derive(Deserialize, Default)]
pub struct Notice {
    pub notice: Option<String>,
}

/// Escapes a value for a URL query component.
pub fn query_value(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// Sends the browser to `path` with a notice (303: the next request is a GET).
pub fn back_to(path: &str, notice: &str) -> Response {
    let (path, fragment) = match path.split_once('#') {
        Some((path, fragment)) => (path, format!("#{fragment}")),
        None => (path, String::new()),
    };
    let separator = if path.contains('?') { '&' } else { '?' };
    Redirect::to(&format!(
        "{path}{separator}notice={}{fragment}",
        query_value(notice)
    ))
    .into_response()
}

/// The error page for a failed read or action (503), logged.
pub fn failure(what: &str, error: &anyhow::Error) -> Response {
    tracing::error!("console: {what}: {error:#}");
    let body = html! { p class="error" { (what) ": " (format!("{error:#}")) } };
    (
        StatusCode::SERVICE_UNAVAILABLE,
        layout("Error", Section::Dashboard, None, body),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolated_text_is_escaped() {
        let page = layout(
            r#"<a href="x">'&'</a>"#,
            Section::Events,
            Some("<script>"),
            html! { p { "<b>" } },
        )
        .0;
        assert!(
            page.contains("&lt;a href=&quot;x&quot;&gt;'&amp;'&lt;/a&gt;"),
            "{page}"
        );
        assert!(page.contains("&lt;script&gt;") && page.contains("&lt;b&gt;"));
        assert!(!page.contains("<script>") && !page.contains("<b>"));
        assert!(page.contains(r#"<a href="/admin/events" aria-current="page">Events</a>"#));
    }
}
