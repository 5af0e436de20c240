//! `http`: outbound requests through the standard `wasi:http/outgoing-handler`,
//! under the host's policy.
//!
//! Every request a plugin sends (and every URL `blob.copy-from-url` fetches)
//! passes one gate, [`policy::Outbound::admit`]: the event's request budget,
//! then the scheme and authority against the grant's allow-list, and, unless
//! the grant says `allow_private = true`, a public target: an IP literal is
//! checked as written, a name after DNS resolution (the client's resolver
//! drops loopback, private, link-local, shared, documentation and metadata
//! addresses, so a name that resolves only to those fails to connect).
//! Redirects are not followed: the plugin sees the 3xx and decides.
//! Responses are capped in size and time.
//!
//! - [`grant`]: the manifest's `http` grant and its allow-list entries;
//! - [`cache`]: GETs of verifier and responder plugins, kept by the host;
//! - [`policy`]: the plugin's policy and the per-instance gate;
//! - [`client`]: the host's shared clients;
//! - [`hooks`]: the `wasi:http` send hook.

pub mod cache;
pub mod client;
pub mod grant;
pub mod hooks;
pub mod policy;

pub use client::HttpService;
pub use grant::HttpGrant;
pub use hooks::HttpHooks;
pub use policy::{HttpPolicy, Outbound, Refusal};
