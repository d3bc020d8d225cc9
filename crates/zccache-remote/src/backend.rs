//! Where the tier's entries live: S3-compatible storage through OpenDAL, Redis through the
//! redis crate's multiplexed connection.
//!
//! Redis is not reached through OpenDAL: its Redis service (0.54) checks a connection out of a
//! pool for every call and sends a PING first, so every lookup cost two round trips. One
//! multiplexed connection sends each lookup as one command, and a multi-file call's lookups
//! side by side on it. The keys are those OpenDAL's root `/zccache/` gave, so that entries
//! written before stay found.

use crate::config::{RemoteConfig, Target};
use crate::GET_TIMEOUT;
use opendal::layers::{RetryLayer, TimeoutLayer};
use opendal::{ErrorKind, Operator};
use std::sync::Arc;

/// The storage of one tier. Cloned for every call; a clone shares the connection.
#[derive(Clone)]
pub(crate) enum Backend {
    Redis(Arc<RedisBackend>),
    OpenDal(Operator),
}

pub(crate) struct RedisBackend {
    client: redis::Client,
    /// Made by the first call (the tier's first contact) and kept, with a number that tells
    /// one connection from the next. One the server closed (a restart, or an idle timeout as
    /// managed Redis services set) is replaced by the call that finds it closed; one that
    /// cannot be replaced fails the calls, the breaker opens, and the probe that finds the
    /// server back brings a new backend (see `Remote::probe_behind`).
    connection: tokio::sync::Mutex<Option<(u64, redis::aio::MultiplexedConnection)>>,
}

/// The prefix of every Redis key (OpenDAL's root `/zccache/`).
const REDIS_PREFIX: &str = "zccache/";

/// The key OpenDAL's probe (`stat`) looked for; absent, and its absence is an answer.
const PROBE_KEY: &str = "v1/probe";

impl Backend {
    /// The backend for `config`; nothing is contacted yet.
    pub(crate) fn open(config: &RemoteConfig) -> Result<Backend, String> {
        match &config.target {
            Target::Redis {
                endpoint,
                username,
                password,
                db,
            } => {
                let (host, port) = split_host_port(&config.target.contact_address())
                    .ok_or_else(|| format!("remote {config}: expected host:port"))?;
                let addr = if endpoint.starts_with("rediss://") {
                    redis::ConnectionAddr::TcpTls {
                        host,
                        port,
                        insecure: false,
                        tls_params: None,
                    }
                } else {
                    redis::ConnectionAddr::Tcp(host, port)
                };
                let info = redis::ConnectionInfo {
                    addr,
                    redis: redis::RedisConnectionInfo {
                        db: *db,
                        username: username.clone(),
                        password: password.clone(),
                        protocol: redis::ProtocolVersion::RESP2,
                    },
                };
                // The error would show the connection info, password included: not kept.
                let client = redis::Client::open(info)
                    .map_err(|_| format!("remote {config}: not a usable Redis address"))?;
                Ok(Backend::Redis(Arc::new(RedisBackend {
                    client,
                    connection: tokio::sync::Mutex::new(None),
                })))
            }
            Target::S3 {
                bucket,
                prefix,
                endpoint,
                region,
                keys,
                anonymous,
            } => {
                let mut builder = opendal::services::S3::default()
                    .bucket(bucket)
                    .root(&format!("/{prefix}"))
                    .region(region.as_deref().unwrap_or("us-east-1"))
                    .disable_ec2_metadata();
                if let Some(endpoint) = endpoint {
                    builder = builder.endpoint(endpoint);
                }
                if let Some((id, secret, token)) = keys {
                    builder = builder.access_key_id(id).secret_access_key(secret);
                    if let Some(token) = token {
                        builder = builder.session_token(token);
                    }
                }
                if *anonymous {
                    builder = builder.allow_anonymous();
                }
                let timeouts = TimeoutLayer::new()
                    .with_timeout(GET_TIMEOUT)
                    .with_io_timeout(GET_TIMEOUT);
                // Timeout first, then retry: each attempt is bounded, and a retry is one more
                // attempt.
                let retry = RetryLayer::new().with_max_times(1);
                Operator::new(builder)
                    .map(|b| Backend::OpenDal(b.layer(timeouts).layer(retry).finish()))
                    .map_err(|e| format!("remote {config}: {e}"))
            }
        }
    }

    /// The bytes stored under `key`; `None` when there are none.
    pub(crate) async fn read(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        match self {
            Backend::Redis(redis) => {
                let mut get = redis::cmd("GET");
                get.arg(format!("{REDIS_PREFIX}{key}"));
                redis.run::<Option<Vec<u8>>>(&get).await
            }
            Backend::OpenDal(op) => match op.read(key).await {
                Ok(buffer) => Ok(Some(buffer.to_vec())),
                Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e.to_string()),
            },
        }
    }

    /// Stores `bytes` under `key`.
    pub(crate) async fn write(&self, key: &str, bytes: Vec<u8>) -> Result<(), String> {
        match self {
            Backend::Redis(redis) => {
                let mut set = redis::cmd("SET");
                set.arg(format!("{REDIS_PREFIX}{key}")).arg(bytes);
                redis.run::<()>(&set).await
            }
            Backend::OpenDal(op) => op
                .write(key, bytes)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
        }
    }

    /// One request that any healthy remote answers ("not found" is an answer).
    pub(crate) async fn probe(&self) -> Result<(), String> {
        match self {
            Backend::Redis(redis) => {
                let mut exists = redis::cmd("EXISTS");
                exists.arg(format!("{REDIS_PREFIX}{PROBE_KEY}"));
                redis.run::<i64>(&exists).await.map(|_| ())
            }
            Backend::OpenDal(op) => match op.stat(PROBE_KEY).await {
                Ok(_) => Ok(()),
                Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e.to_string()),
            },
        }
    }
}

impl RedisBackend {
    /// Sends `command` on the tier's connection. When the connection turns out closed by the
    /// server, the command goes once more on a new one (all of the tier's commands can be
    /// repeated). The caller's deadline bounds both attempts.
    async fn run<T: redis::FromRedisValue>(&self, command: &redis::Cmd) -> Result<T, String> {
        let (number, mut connection) = self.connection().await?;
        match command.query_async::<T>(&mut connection).await {
            Ok(answer) => Ok(answer),
            Err(e) if e.is_unrecoverable_error() => {
                self.forget(number).await;
                let (_, mut connection) = self.connection().await?;
                command
                    .query_async::<T>(&mut connection)
                    .await
                    .map_err(|e| e.to_string())
            }
            Err(e) => Err(e.to_string()),
        }
    }

    /// The connection and its number, made now if there is none. The caller's deadline
    /// bounds the connection too, and names the time in its error.
    async fn connection(&self) -> Result<(u64, redis::aio::MultiplexedConnection), String> {
        let mut slot = self.connection.lock().await;
        if let Some(kept) = slot.as_ref() {
            return Ok(kept.clone());
        }
        let made = self
            .client
            .get_multiplexed_async_connection_with_config(&redis::AsyncConnectionConfig::new())
            .await
            .map_err(|e| e.to_string())?;
        let number = CONNECTIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        *slot = Some((number, made.clone()));
        Ok((number, made))
    }

    /// Drops connection `number` unless another call has already replaced it.
    async fn forget(&self, number: u64) {
        let mut slot = self.connection.lock().await;
        if slot.as_ref().is_some_and(|(kept, _)| *kept == number) {
            *slot = None;
        }
    }
}

/// Numbers the connections made, so that a call drops only the one it found closed.
static CONNECTIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// `host:port` or `[v6]:port`.
fn split_host_port(address: &str) -> Option<(String, u16)> {
    let (host, port) = address.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (!host.is_empty()).then_some(())?;
    Some((host.to_string(), port.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::split_host_port;

    #[test]
    fn redis_addresses_split_into_host_and_port() {
        assert_eq!(
            split_host_port("cache.lan:6380"),
            Some(("cache.lan".into(), 6380))
        );
        assert_eq!(split_host_port("[::1]:6379"), Some(("::1".into(), 6379)));
        assert_eq!(split_host_port("cache.lan"), None);
        assert_eq!(split_host_port(":6379"), None);
        assert_eq!(split_host_port("h:port"), None);
    }
}
