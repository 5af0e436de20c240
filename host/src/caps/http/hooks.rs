//! The `wasi:http` send hook: every request a plugin sends through the
//! standard `outgoing-handler` is admitted by the instance's [`Outbound`]
//! gate, sent by the host's client without following redirects, and its
//! response read under the size cap before the plugin sees it. A verifier's
//! or responder's GETs are answered from the host's cache while fresh.

use std::sync::Arc;

use http_body_util::{BodyExt, Full};
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use super::client::{HttpService, error_chain, read_capped};
use super::policy::{Outbound, Refusal};

/// Largest request body a plugin may send.
const MAX_REQUEST_BYTES: usize = 16 << 20;

/// One instance's outbound state: the host's clients and the instance's gate.
pub struct HttpHooks {
    service: HttpService,
    outbound: Arc<Outbound>,
}

impl HttpHooks {
    pub fn new(service: HttpService, outbound: Arc<Outbound>) -> Self {
        Self { service, outbound }
    }
}

/// A response for the plugin and the future that finishes sending its request.
type Sent = (
    http::Response<WasiBody>,
    Box<dyn Future<Output = Result<(), HttpError>> + Send>,
);

type SendFuture = Box<dyn Future<Output = Result<Sent, HttpError>> + Send>;

/// The `wasi:http` error code a refusal answers the plugin with.
fn error_code(refusal: &Refusal) -> HttpError {
    match refusal {
        Refusal::Prohibited(_) => HttpError::DestinationIpProhibited,
        Refusal::Limit(_) => HttpError::ConnectionLimitReached,
        Refusal::Denied(_) => HttpError::HttpRequestDenied,
    }
}

impl WasiHttpHooks for HttpHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        _options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> SendFuture {
        let outbound = self.outbound.clone();
        let client = self.service.client(outbound.policy()).clone();
        let gets = self.service.gets.clone();
        Box::new(async move {
            let policy = outbound.policy();
            let (parts, body) = request.into_parts();
            let url =
                reqwest::Url::parse(&parts.uri.to_string()).map_err(|_| HttpError::HttpRequestUriInvalid)?;
            outbound.admit(&url).map_err(|refusal| error_code(&refusal))?;
            let body = http_body_util::Limited::new(body, MAX_REQUEST_BYTES)
                .collect()
                .await
                .map_err(|_| HttpError::HttpRequestBodySize(None))?
                .to_bytes();
            let cacheable = policy.cache_gets && parts.method == http::Method::GET && body.is_empty();
            if cacheable && let Some(kept) = gets.get(outbound.plugin(), url.as_str()) {
                crate::caps::trace::trace_call!(
                    "http GET {}://{} -> 200 (kept)",
                    url.scheme(),
                    url.host_str().unwrap_or("")
                );
                return answer(http::StatusCode::OK, &kept.headers, kept.body);
            }
            let mut headers = parts.headers;
            headers.remove(http::header::HOST);
            let method = parts.method.clone();
            let response = client
                .request(parts.method, url.clone())
                .headers(headers)
                .body(body)
                .timeout(policy.timeout)
                .send()
                .await
                .map_err(|e| {
                    let code = if e.is_timeout() {
                        HttpError::ConnectionTimeout
                    } else if e.is_connect() {
                        HttpError::ConnectionRefused
                    } else {
                        HttpError::HttpProtocolError
                    };
                    let host = url.host_str().unwrap_or("").to_string();
                    outbound.refused(Refusal::Denied(format!("{host}: {}", error_chain(e))));
                    code
                })?;
            let status = response.status();
            crate::caps::trace::trace_call!(
                "http {} {}://{}{} -> {status}",
                method,
                url.scheme(),
                url.host_str().unwrap_or(""),
                if url.path().len() > 1 { "/…" } else { "/" }
            );
            let headers = response.headers().clone();
            let bytes = read_capped(response, policy.max_response_bytes)
                .await
                .map_err(|refusal| {
                    outbound.refused(refusal);
                    HttpError::HttpResponseBodySize(Some(policy.max_response_bytes))
                })?;
            if cacheable && status == http::StatusCode::OK {
                gets.put(outbound.plugin(), url.as_str(), &headers, bytes.clone());
            }
            answer(status, &headers, bytes)
        })
    }
}

/// A response for the plugin, its body read already.
fn answer(
    status: http::StatusCode,
    headers: &http::HeaderMap,
    bytes: bytes::Bytes,
) -> Result<Sent, HttpError> {
    let mut builder = http::Response::builder().status(status);
    for (name, value) in headers {
        if name != http::header::TRANSFER_ENCODING {
            builder = builder.header(name, value);
        }
    }
    let body = Full::new(bytes).map_err(|never| match never {}).boxed_unsync();
    let response = builder.body(body).map_err(|_| HttpError::HttpProtocolError)?;
    let done: Box<dyn Future<Output = Result<(), HttpError>> + Send> = Box::new(async { Ok(()) });
    Ok((response, done))
}
