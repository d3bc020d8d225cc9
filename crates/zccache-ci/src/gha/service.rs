//! The cache service's Twirp API (v2): reserve an entry, finalize it, find one to restore.
//!
//! Every call is a JSON POST to `$ACTIONS_RESULTS_URL/twirp/github.actions.results.api.v1.
//! CacheService/<Method>` with the runner's token. The service answers 409 when the key and
//! version already exist (another job saved them: success for us), 429 with `Retry-After` when
//! the repository creates entries too fast, and 401/403 when the token may not write (a pull
//! request from a fork).

use super::GhaError;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::time::Duration;

const SERVICE: &str = "twirp/github.actions.results.api.v1.CacheService";

/// Attempts per call when the service throttles (429) or fails (5xx, connection reset).
const ATTEMPTS: u32 = 5;

/// The longest `Retry-After` honoured; a longer one is reported instead of waited out.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Where the runner's cache service is and the token that opens it.
#[derive(Clone)]
pub struct Runtime {
    /// `ACTIONS_RESULTS_URL`, without its trailing slash.
    pub results_url: String,
    /// `ACTIONS_RUNTIME_TOKEN`: never printed.
    pub token: String,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("results_url", &self.results_url)
            .field("token", &"<hidden>")
            .finish()
    }
}

impl Runtime {
    /// The runtime of a GitHub Actions job, from `ACTIONS_RESULTS_URL` and
    /// `ACTIONS_RUNTIME_TOKEN` (composite actions see them only when a JavaScript step
    /// exported them, as the zccache action does).
    pub fn from_env() -> Result<Runtime, GhaError> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        match (var("ACTIONS_RESULTS_URL"), var("ACTIONS_RUNTIME_TOKEN")) {
            (Some(url), Some(token)) => Ok(Runtime {
                results_url: url.trim().trim_end_matches('/').to_string(),
                token: token.trim().to_string(),
            }),
            (url, token) => {
                let missing: Vec<&str> = [
                    url.is_none().then_some("ACTIONS_RESULTS_URL"),
                    token.is_none().then_some("ACTIONS_RUNTIME_TOKEN"),
                ]
                .into_iter()
                .flatten()
                .collect();
                let v1 = var("ACTIONS_CACHE_URL").is_some() && url.is_none();
                Err(GhaError::Unavailable(format!(
                    "{} not set{}",
                    missing.join(" and "),
                    if v1 {
                        " (only ACTIONS_CACHE_URL is: the retired cache service v1 is not supported)"
                    } else {
                        ""
                    }
                )))
            }
        }
    }
}

#[derive(Serialize)]
struct CreateRequest<'a> {
    key: &'a str,
    version: &'a str,
}

#[derive(Deserialize)]
struct CreateResponse {
    ok: bool,
    #[serde(default)]
    signed_upload_url: String,
    #[serde(default)]
    message: String,
}

#[derive(Serialize)]
struct FinalizeRequest<'a> {
    key: &'a str,
    version: &'a str,
    /// int64: proto3's JSON form is a string.
    size_bytes: String,
}

#[derive(Deserialize)]
struct FinalizeResponse {
    ok: bool,
    #[serde(default)]
    message: String,
}

#[derive(Serialize)]
struct LookupRequest<'a> {
    key: &'a str,
    restore_keys: &'a [String],
    version: &'a str,
}

#[derive(Deserialize)]
struct LookupResponse {
    ok: bool,
    #[serde(default)]
    signed_download_url: String,
    #[serde(default)]
    matched_key: String,
}

/// A Twirp error body.
#[derive(Deserialize, Default)]
struct TwirpError {
    #[serde(default)]
    code: String,
    #[serde(default)]
    msg: String,
}

/// An entry found for restoring.
#[derive(Debug, Clone)]
pub struct Found {
    pub matched_key: String,
    pub download_url: String,
}

/// The cache service of one job.
pub struct CacheService {
    runtime: Runtime,
    agent: ureq::Agent,
}

/// The HTTP agent for the service and the blob store: no status is an error (each call reads
/// its own), bounded connect time so a missing server is reported quickly.
pub(crate) fn agent(global: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(10)))
        .timeout_global(Some(global))
        .http_status_as_error(false)
        .user_agent(concat!("zccache/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

impl CacheService {
    pub fn new(runtime: Runtime) -> CacheService {
        CacheService {
            runtime,
            agent: agent(Duration::from_secs(60)),
        }
    }

    /// Reserves `key` at `version`: the URL to upload the archive to, or `None` when the entry
    /// already exists (409).
    pub fn create(&self, key: &str, version: &str) -> Result<Option<String>, GhaError> {
        match self.call::<_, CreateResponse>("CreateCacheEntry", &CreateRequest { key, version }) {
            Ok(reply) if reply.ok && !reply.signed_upload_url.is_empty() => {
                Ok(Some(reply.signed_upload_url))
            }
            Ok(reply) => Err(GhaError::Service(format!(
                "CreateCacheEntry for {key:?} refused: {}",
                if reply.message.is_empty() {
                    "no upload URL"
                } else {
                    &reply.message
                }
            ))),
            Err(GhaError::Conflict) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Marks the uploaded archive of `key` complete, `size` bytes long.
    pub fn finalize(&self, key: &str, version: &str, size: u64) -> Result<(), GhaError> {
        let request = FinalizeRequest {
            key,
            version,
            size_bytes: size.to_string(),
        };
        let reply: FinalizeResponse = self.call("FinalizeCacheEntryUpload", &request)?;
        if reply.ok {
            Ok(())
        } else {
            Err(GhaError::Service(format!(
                "FinalizeCacheEntryUpload for {key:?} refused: {}",
                reply.message
            )))
        }
    }

    /// The entry to restore: `key` exactly, else the newest whose key starts with `key`, else
    /// the same for each restore key in order, all at `version` (the service decides).
    pub fn lookup(
        &self,
        key: &str,
        restore_keys: &[String],
        version: &str,
    ) -> Result<Option<Found>, GhaError> {
        let reply: LookupResponse = self.call(
            "GetCacheEntryDownloadURL",
            &LookupRequest {
                key,
                restore_keys,
                version,
            },
        )?;
        Ok(
            (reply.ok && !reply.signed_download_url.is_empty()).then(|| Found {
                matched_key: if reply.matched_key.is_empty() {
                    key.to_string()
                } else {
                    reply.matched_key
                },
                download_url: reply.signed_download_url,
            }),
        )
    }

    /// One Twirp call, retried after 429 (`Retry-After`), 5xx and broken connections.
    fn call<Q: Serialize, R: DeserializeOwned>(
        &self,
        method: &str,
        request: &Q,
    ) -> Result<R, GhaError> {
        let url = format!("{}/{SERVICE}/{method}", self.runtime.results_url);
        let body = serde_json::to_vec(request).expect("requests serialize");
        let mut attempt = 0;
        loop {
            attempt += 1;
            let last = attempt >= ATTEMPTS;
            let sent = self
                .agent
                .post(&url)
                .header("Authorization", &format!("Bearer {}", self.runtime.token))
                .header("Content-Type", "application/json")
                .header("Accept", "application/json")
                .send(&body[..]);
            let mut response = match sent {
                Ok(response) => response,
                Err(e) if !last && transient(&e) => {
                    std::thread::sleep(backoff(attempt));
                    continue;
                }
                Err(e) => {
                    return Err(GhaError::Unreachable(format!(
                        "{method} at {}: {e}",
                        self.runtime.results_url
                    )))
                }
            };
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let text = response
                .body_mut()
                .read_to_string()
                .map_err(|e| GhaError::Service(format!("{method}: reading the reply: {e}")))?;
            if (200..300).contains(&status) {
                return serde_json::from_str(&text).map_err(|e| {
                    GhaError::Service(format!("{method}: unexpected reply ({e}): {text:.200}"))
                });
            }
            let error: TwirpError = serde_json::from_str(&text).unwrap_or_default();
            let what = format!(
                "{method}: HTTP {status}{}{}",
                if error.code.is_empty() { "" } else { " " },
                if error.msg.is_empty() {
                    error.code.clone()
                } else {
                    format!("{}: {}", error.code, error.msg)
                }
            );
            match status {
                409 => return Err(GhaError::Conflict),
                401 | 403 => return Err(GhaError::Denied(what)),
                429 if !last => {
                    let wait = retry_after.unwrap_or_else(|| backoff(attempt));
                    if wait > MAX_RETRY_AFTER {
                        return Err(GhaError::Throttled(format!(
                            "{what} (Retry-After {} s: not waited)",
                            wait.as_secs()
                        )));
                    }
                    std::thread::sleep(wait);
                }
                429 => return Err(GhaError::Throttled(what)),
                500..=599 if !last => std::thread::sleep(backoff(attempt)),
                _ => return Err(GhaError::Service(what)),
            }
        }
    }
}

/// A failure worth another attempt: the connection, not the request, went wrong.
pub(crate) fn transient(error: &ureq::Error) -> bool {
    matches!(
        error,
        ureq::Error::Io(_) | ureq::Error::Timeout(_) | ureq::Error::ConnectionFailed
    )
}

/// 0.5 s, 1 s, 2 s, 4 s… before attempt `attempt + 1`.
pub(crate) fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(500 << attempt.saturating_sub(1).min(4))
}
