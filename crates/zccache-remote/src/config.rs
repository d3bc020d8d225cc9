//! Where the remote tier is and how it may be used: `ZCCACHE_REMOTE` (or `remote = "…"` in
//! `<root>/config.toml`), `ZCCACHE_REMOTE_MODE`, and for S3 the usual AWS variables plus
//! `ZCCACHE_S3_ENDPOINT`. Credentials are kept out of every message ([`RemoteConfig`]'s
//! `Display` shows none).

use std::fmt;

/// How the tier may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    ReadWrite,
    ReadOnly,
    WriteOnly,
}

impl Mode {
    pub fn parse(text: &str) -> Option<Mode> {
        match text.trim() {
            "" | "read-write" | "rw" => Some(Mode::ReadWrite),
            "read-only" | "ro" => Some(Mode::ReadOnly),
            "write-only" | "wo" => Some(Mode::WriteOnly),
            _ => None,
        }
    }

    pub fn reads(self) -> bool {
        self != Mode::WriteOnly
    }

    pub fn writes(self) -> bool {
        self != Mode::ReadOnly
    }
}

/// The storage behind the tier.
#[derive(Clone, PartialEq, Eq)]
pub enum Target {
    /// `redis://[user:pass@]host:port[/db]` or `rediss://…`.
    Redis {
        /// `redis://host:port` or `rediss://host:port`, without credentials or database.
        endpoint: String,
        username: Option<String>,
        password: Option<String>,
        db: i64,
    },
    /// `s3://bucket/prefix`.
    S3 {
        bucket: String,
        prefix: String,
        /// `ZCCACHE_S3_ENDPOINT`: a non-AWS server, addressed path-style.
        endpoint: Option<String>,
        region: Option<String>,
        /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN` when set; otherwise
        /// OpenDAL's own loading (`AWS_PROFILE`, the shared credentials file).
        keys: Option<(String, String, Option<String>)>,
        /// No credentials at all: read anonymously.
        anonymous: bool,
    },
}

impl Target {
    /// The `host:port` a connection to the remote goes to: checked before the storage client
    /// is trusted with a call (see `Remote::open`).
    pub fn contact_address(&self) -> String {
        match self {
            Target::Redis { endpoint, .. } => endpoint
                .split_once("://")
                .map_or(endpoint.as_str(), |(_, rest)| rest)
                .to_string(),
            Target::S3 {
                endpoint, region, ..
            } => match endpoint {
                Some(url) => {
                    let (scheme, rest) = url.split_once("://").unwrap_or(("https", url));
                    let host = rest.split('/').next().unwrap_or(rest);
                    if host
                        .rsplit_once(':')
                        .is_some_and(|(_, port)| port.parse::<u16>().is_ok())
                    {
                        host.to_string()
                    } else if scheme == "http" {
                        format!("{host}:80")
                    } else {
                        format!("{host}:443")
                    }
                }
                None => format!(
                    "s3.{}.amazonaws.com:443",
                    region.as_deref().unwrap_or("us-east-1")
                ),
            },
        }
    }
}

/// Shows everything but the password.
impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Redis {
                endpoint,
                username,
                password,
                db,
            } => f
                .debug_struct("Redis")
                .field("endpoint", endpoint)
                .field("username", username)
                .field("password", &password.as_ref().map(|_| "<hidden>"))
                .field("db", db)
                .finish(),
            Target::S3 {
                bucket,
                prefix,
                endpoint,
                region,
                keys,
                anonymous,
            } => f
                .debug_struct("S3")
                .field("bucket", bucket)
                .field("prefix", prefix)
                .field("endpoint", endpoint)
                .field("region", region)
                .field("access_key_id", &keys.as_ref().map(|k| &k.0))
                .field("anonymous", anonymous)
                .finish(),
        }
    }
}

#[derive(Clone, PartialEq, Eq)]
pub struct RemoteConfig {
    pub target: Target,
    pub mode: Mode,
    /// How long a remote that failed repeatedly is skipped before it is probed again
    /// (`ZCCACHE_REMOTE_RETRY_SECS`, default [`crate::breaker::OPEN_FOR`]).
    pub retry_after: std::time::Duration,
    /// How long lookups wait for the first answer of a freshly set-up tier
    /// (`ZCCACHE_REMOTE_CONNECT_MS`); `None` lets the tier judge by how long its connection
    /// took (see `zccache_remote::first_contact_wait`).
    pub first_contact: Option<std::time::Duration>,
}

impl fmt::Display for RemoteConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.target {
            Target::Redis { endpoint, db, .. } => write!(f, "{endpoint}/{db}")?,
            Target::S3 {
                bucket,
                prefix,
                endpoint,
                ..
            } => {
                write!(f, "s3://{bucket}/{prefix}")?;
                if let Some(endpoint) = endpoint {
                    write!(f, " at {endpoint}")?;
                }
            }
        }
        let mode = match self.mode {
            Mode::ReadWrite => "",
            Mode::ReadOnly => " (read-only)",
            Mode::WriteOnly => " (write-only)",
        };
        f.write_str(mode)
    }
}

impl fmt::Debug for RemoteConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Percent-decoding for the user and password of a URL.
fn unescape(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(value) = u8::from_str_radix(&text[i + 1..i + 3], 16) {
                out.push(value);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl RemoteConfig {
    /// Parses the tier's URL and mode; `env` reads a variable (the process's, in the daemon).
    pub fn parse(
        url: &str,
        mode: Option<&str>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<RemoteConfig, String> {
        let mode = match mode {
            Some(text) => Mode::parse(text).ok_or_else(|| {
                format!(
                    "ZCCACHE_REMOTE_MODE={text:?}: expected read-write, read-only or write-only"
                )
            })?,
            None => Mode::ReadWrite,
        };
        let retry_after = match env("ZCCACHE_REMOTE_RETRY_SECS") {
            Some(text) => text
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|secs| *secs > 0)
                .map(std::time::Duration::from_secs)
                .ok_or_else(|| {
                    format!(
                        "ZCCACHE_REMOTE_RETRY_SECS={text:?}: expected a whole number of seconds"
                    )
                })?,
            None => crate::breaker::OPEN_FOR,
        };
        let first_contact = match env("ZCCACHE_REMOTE_CONNECT_MS") {
            Some(text) => Some(
                text.trim()
                    .parse::<u64>()
                    .ok()
                    .map(std::time::Duration::from_millis)
                    .ok_or_else(|| {
                        format!(
                            "ZCCACHE_REMOTE_CONNECT_MS={text:?}: expected a whole number of milliseconds"
                        )
                    })?,
            ),
            None => None,
        };
        let url = url.trim();
        let (scheme, rest) = url.split_once("://").ok_or_else(|| {
            format!(
                "remote {:?}: expected redis://, rediss:// or s3://",
                scheme_only(url)
            )
        })?;
        let target = match scheme {
            "redis" | "rediss" => {
                let (auth, hostpath) = match rest.rsplit_once('@') {
                    Some((auth, hostpath)) => (Some(auth), hostpath),
                    None => (None, rest),
                };
                let (host, db) = match hostpath.split_once('/') {
                    Some((host, db)) if !db.is_empty() => (
                        host,
                        db.parse::<i64>().map_err(|_| {
                            format!("remote {scheme}://…/{db}: the database must be a number")
                        })?,
                    ),
                    Some((host, _)) => (host, 0),
                    None => (hostpath, 0),
                };
                if host.is_empty() {
                    return Err(format!("remote {scheme}://: no host"));
                }
                let host = if host.contains(':') {
                    host.to_string()
                } else {
                    format!("{host}:6379")
                };
                let (username, password) = match auth {
                    Some(auth) => match auth.split_once(':') {
                        Some((user, pass)) => (
                            Some(unescape(user)).filter(|u| !u.is_empty()),
                            Some(unescape(pass)),
                        ),
                        None => (None, Some(unescape(auth))),
                    },
                    None => (None, None),
                };
                Target::Redis {
                    endpoint: format!("{scheme}://{host}"),
                    username,
                    password,
                    db,
                }
            }
            "s3" => {
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                if bucket.is_empty() {
                    return Err("remote s3://: no bucket".into());
                }
                let keys = match (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
                    (Some(id), Some(secret)) if !id.is_empty() => Some((
                        id,
                        secret,
                        env("AWS_SESSION_TOKEN").filter(|t| !t.is_empty()),
                    )),
                    _ => None,
                };
                let has_keys = keys.is_some()
                    || env("AWS_PROFILE").is_some()
                    || env("AWS_WEB_IDENTITY_TOKEN_FILE").is_some();
                let shared = env("HOME")
                    .map(|home| {
                        std::path::Path::new(&home)
                            .join(".aws/credentials")
                            .is_file()
                    })
                    .unwrap_or(false);
                Target::S3 {
                    bucket: bucket.to_string(),
                    prefix: prefix.trim_matches('/').to_string(),
                    endpoint: env("ZCCACHE_S3_ENDPOINT").filter(|e| !e.is_empty()),
                    region: env("AWS_REGION")
                        .or_else(|| env("AWS_DEFAULT_REGION"))
                        .filter(|r| !r.is_empty()),
                    keys,
                    anonymous: !has_keys && !shared,
                }
            }
            other => {
                return Err(format!(
                    "remote scheme {other:?}: expected redis://, rediss:// or s3://"
                ))
            }
        };
        if matches!(
            target,
            Target::S3 {
                anonymous: true,
                ..
            }
        ) && mode.writes()
        {
            // Anonymous access can only read: say so rather than fail every upload.
            return Ok(RemoteConfig {
                target,
                mode: Mode::ReadOnly,
                retry_after,
                first_contact,
            });
        }
        Ok(RemoteConfig {
            target,
            mode,
            retry_after,
            first_contact,
        })
    }
}

/// The scheme of a URL, or a placeholder: never the rest, which may hold a password.
fn scheme_only(url: &str) -> &str {
    url.split_once(':').map(|(s, _)| s).unwrap_or("…")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn redis_urls_with_and_without_credentials_and_database() {
        let c = RemoteConfig::parse("redis://127.0.0.1:6390/2", None, &none).unwrap();
        assert_eq!(
            c.target,
            Target::Redis {
                endpoint: "redis://127.0.0.1:6390".into(),
                username: None,
                password: None,
                db: 2
            }
        );
        let c = RemoteConfig::parse(
            "rediss://bob:p%40ss@cache.example",
            Some("read-only"),
            &none,
        )
        .unwrap();
        assert_eq!(c.mode, Mode::ReadOnly);
        match &c.target {
            Target::Redis {
                endpoint,
                username,
                password,
                db,
            } => {
                assert_eq!(endpoint, "rediss://cache.example:6379");
                assert_eq!(username.as_deref(), Some("bob"));
                assert_eq!(password.as_deref(), Some("p@ss"));
                assert_eq!(*db, 0);
            }
            _ => panic!(),
        }
        // The password never shows.
        assert!(!format!("{c} {c:?}").contains("p@ss"));
        assert!(!format!("{c}").contains("p%40ss"));
    }

    #[test]
    fn s3_urls_take_the_endpoint_region_and_credentials_from_the_environment() {
        let env = |name: &str| match name {
            "ZCCACHE_S3_ENDPOINT" => Some("http://127.0.0.1:9000".to_string()),
            "AWS_REGION" => Some("eu-west-1".to_string()),
            "AWS_ACCESS_KEY_ID" => Some("AKIA".to_string()),
            "AWS_SECRET_ACCESS_KEY" => Some("hush".to_string()),
            _ => None,
        };
        let c = RemoteConfig::parse("s3://builds/zccache/", None, &env).unwrap();
        assert_eq!(
            c.target,
            Target::S3 {
                bucket: "builds".into(),
                prefix: "zccache".into(),
                endpoint: Some("http://127.0.0.1:9000".into()),
                region: Some("eu-west-1".into()),
                keys: Some(("AKIA".into(), "hush".into(), None)),
                anonymous: false
            }
        );
        assert!(!format!("{c} {c:?}").contains("hush"));
        assert_eq!(c.mode, Mode::ReadWrite);
        // Without credentials: anonymous, and so read-only.
        let c = RemoteConfig::parse("s3://public", None, &none).unwrap();
        assert_eq!(c.mode, Mode::ReadOnly);
    }

    #[test]
    fn bad_urls_and_modes_are_named_without_their_secrets() {
        let e = RemoteConfig::parse("http://u:secret@h", None, &none).unwrap_err();
        assert!(e.contains("\"http\"") && !e.contains("secret"), "{e}");
        let e = RemoteConfig::parse("redis//u:secret@h", None, &none).unwrap_err();
        assert!(!e.contains("secret"), "{e}");
        assert!(RemoteConfig::parse("redis://h", Some("sometimes"), &none).is_err());
        assert!(RemoteConfig::parse("redis://h/x", None, &none).is_err());
        assert!(RemoteConfig::parse("s3:///p", None, &none).is_err());
    }

    #[test]
    fn the_first_contacts_wait_is_set_in_milliseconds_or_left_to_the_tier() {
        use crate::{first_contact_wait, FIRST_CONTACT_MAX, FIRST_CONTACT_MIN};
        use std::time::Duration;
        let c = RemoteConfig::parse("redis://h", None, &none).unwrap();
        assert_eq!(c.first_contact, None);
        let env = |name: &str| (name == "ZCCACHE_REMOTE_CONNECT_MS").then(|| " 400".to_string());
        let c = RemoteConfig::parse("redis://h", None, &env).unwrap();
        assert_eq!(c.first_contact, Some(Duration::from_millis(400)));
        let bad = |name: &str| (name == "ZCCACHE_REMOTE_CONNECT_MS").then(|| "1s".to_string());
        let e = RemoteConfig::parse("redis://h", None, &bad).unwrap_err();
        assert!(e.contains("ZCCACHE_REMOTE_CONNECT_MS"), "{e}");

        let ms = Duration::from_millis;
        // Configured: that, whatever the connection took.
        assert_eq!(first_contact_wait(Some(ms(400)), None), ms(400));
        assert_eq!(first_contact_wait(Some(ms(0)), Some(ms(90))), ms(0));
        // Left to the tier: the least while connecting and for a nearby remote, eight times
        // the connection's time for one further away, never more than the most.
        assert_eq!(first_contact_wait(None, None), FIRST_CONTACT_MIN);
        assert_eq!(first_contact_wait(None, Some(ms(1))), FIRST_CONTACT_MIN);
        assert_eq!(first_contact_wait(None, Some(ms(30))), ms(240));
        assert_eq!(first_contact_wait(None, Some(ms(200))), FIRST_CONTACT_MAX);
    }
}
