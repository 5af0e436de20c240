//! Signing in and out: the token form, its check, the session cookie.

use std::sync::Arc;

use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use maud::{DOCTYPE, html};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::page::head;
use super::session;
use crate::http::error::ApiError;
use crate::http::state::AppState;

pub async fn login_form(State(state): State<Arc<AppState>>) -> Response {
    if state.admin_token.is_none() {
        return ApiError::not_found("no such path").into_response();
    }
    login_page(StatusCode::OK, None)
}

fn login_page(status: StatusCode, problem: Option<&str>) -> Response {
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            (head("Sign in", false))
            body class="login" {
                main {
                    h1 { "webhook-host" }
                    @if let Some(problem) = problem {
                        p class="error" role="alert" { (problem) }
                    }
                    form method="post" action="/admin/login" {
                        label {
                            "Admin token "
                            input type="password" name="token" id="token" autocomplete="current-password" required autofocus;
                        }
                        button type="submit" id="sign-in" { "Sign in" }
                    }
                }
            }
        }
    };
    (status, Html(page.into_string())).into_response()
}

#[derive(Deserialize)]
pub struct Login {
    token: String,
}

pub async fn login(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Form(form): Form<Login>,
) -> Response {
    let Some(token) = &state.admin_token else {
        return ApiError::not_found("no such path").into_response();
    };
    if !bool::from(form.token.as_bytes().ct_eq(token.expose().as_bytes())) {
        tracing::warn!("console: a sign-in with a wrong token");
        return login_page(StatusCode::UNAUTHORIZED, Some("That token is not right."));
    }
    let cookie = session::issue(token, crate::now_ms());
    let set = session::set_cookie(Some(&cookie), session::came_over_https(&headers));
    tracing::info!("console: operator signed in");
    ([(header::SET_COOKIE, set)], Redirect::to("/admin/")).into_response()
}

pub async fn logout(headers: HeaderMap) -> Response {
    let set = session::set_cookie(None, session::came_over_https(&headers));
    ([(header::SET_COOKIE, set)], Redirect::to("/admin/login")).into_response()
}
