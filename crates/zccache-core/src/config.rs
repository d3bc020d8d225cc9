//! Settings taken from the environment.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The store's default size limit: 10 GiB.
pub const DEFAULT_MAX_SIZE: u64 = 10 << 30;

/// The daemon exits after this long without a request unless `ZCCACHE_IDLE_TIMEOUT` says otherwise.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

/// A session whose build process is gone expires after this long without a compile, unless
/// `ZCCACHE_SESSION_TIMEOUT` says otherwise.
pub const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(3600);

/// The compile journal is rotated when it grows past this, unless `ZCCACHE_JOURNAL_MAX_SIZE`
/// says otherwise.
pub const DEFAULT_JOURNAL_MAX_SIZE: u64 = 64 << 20;

/// Settings shared by the client and the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The cache root (`ZCCACHE_CACHE_DIR`, else `~/.zccache`).
    pub cache_dir: PathBuf,
    /// How long an idle daemon stays up; `None` means forever (`ZCCACHE_IDLE_TIMEOUT=0`).
    pub idle_timeout: Option<Duration>,
    /// `ZCCACHE_DISABLE=1`: the client runs every compiler directly.
    pub disabled: bool,
    /// `ZCCACHE_MAX_SIZE`, if set; otherwise `max_size` in `<root>/config.toml`, else 10 GiB
    /// (see [`Config::max_size`]).
    pub max_size_env: Option<u64>,
    /// How long an abandoned session (its build process gone) lingers without a compile.
    pub session_timeout: Duration,
    /// Size at which the compile journal is rotated; 0 turns the journal off.
    pub journal_max_size: u64,
}

/// A setting that could not be understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// Neither `ZCCACHE_CACHE_DIR` nor the home directory (`HOME`; `USERPROFILE` on
    /// Windows) is set.
    NoCacheDir,
    /// A variable holds a value we cannot parse.
    BadValue { var: &'static str, value: String },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::NoCacheDir => write!(
                f,
                "neither ZCCACHE_CACHE_DIR nor {} is set",
                zccache_platform::fs::HOME_VARIABLES.join(" nor ")
            ),
            ConfigError::BadValue { var, value } => {
                write!(f, "{var}={value:?} is not a valid value")
            }
        }
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads the configuration from `env`, resolving a relative cache dir against `cwd`.
    pub fn from_env(env: &HashMap<OsString, OsString>, cwd: &Path) -> Result<Config, ConfigError> {
        let get = |name: &str| env.get(&OsString::from(name)).filter(|v| !v.is_empty());
        let cache_dir = match get("ZCCACHE_CACHE_DIR") {
            Some(dir) => {
                let dir = PathBuf::from(dir);
                if dir.is_absolute() {
                    dir
                } else {
                    cwd.join(dir)
                }
            }
            None => match zccache_platform::fs::HOME_VARIABLES
                .iter()
                .find_map(|var| get(var))
            {
                Some(home) => PathBuf::from(home).join(".zccache"),
                None => return Err(ConfigError::NoCacheDir),
            },
        };
        let idle_timeout = match get("ZCCACHE_IDLE_TIMEOUT") {
            None => Some(DEFAULT_IDLE_TIMEOUT),
            Some(value) => {
                let text = value.to_string_lossy();
                let parsed = parse_duration(&text).ok_or(ConfigError::BadValue {
                    var: "ZCCACHE_IDLE_TIMEOUT",
                    value: text.to_string(),
                })?;
                (!parsed.is_zero()).then_some(parsed)
            }
        };
        let size = |var: &'static str| -> Result<Option<u64>, ConfigError> {
            let Some(value) = get(var) else {
                return Ok(None);
            };
            let text = value.to_string_lossy();
            parse_size(&text).map(Some).ok_or(ConfigError::BadValue {
                var,
                value: text.to_string(),
            })
        };
        let max_size_env = size("ZCCACHE_MAX_SIZE")?;
        let journal_max_size =
            size("ZCCACHE_JOURNAL_MAX_SIZE")?.unwrap_or(DEFAULT_JOURNAL_MAX_SIZE);
        let session_timeout = match get("ZCCACHE_SESSION_TIMEOUT") {
            None => DEFAULT_SESSION_TIMEOUT,
            Some(value) => {
                let text = value.to_string_lossy();
                parse_duration(&text).ok_or(ConfigError::BadValue {
                    var: "ZCCACHE_SESSION_TIMEOUT",
                    value: text.to_string(),
                })?
            }
        };
        let disabled = get("ZCCACHE_DISABLE")
            .map(|v| !matches!(v.to_str(), Some("0" | "false" | "no" | "off")))
            .unwrap_or(false);
        Ok(Config {
            cache_dir: normalize(&cache_dir),
            idle_timeout,
            disabled,
            max_size_env,
            session_timeout,
            journal_max_size,
        })
    }

    /// The store's size limit: `ZCCACHE_MAX_SIZE`, else `max_size = "…"` in the root's
    /// `config.toml`, else [`DEFAULT_MAX_SIZE`].
    pub fn max_size(&self) -> u64 {
        if let Some(size) = self.max_size_env {
            return size;
        }
        let file = std::fs::read_to_string(self.cache_dir.join("config.toml")).unwrap_or_default();
        file.lines()
            .filter_map(|line| line.split_once('='))
            .filter(|(name, _)| name.trim() == "max_size")
            .find_map(|(_, value)| parse_size(value.trim().trim_matches('"')))
            .unwrap_or(DEFAULT_MAX_SIZE)
    }

    /// Reads the configuration from this process's environment and working directory.
    pub fn from_process() -> Result<Config, ConfigError> {
        let env: HashMap<OsString, OsString> = std::env::vars_os().collect();
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
        Config::from_env(&env, &cwd)
    }
}

/// Parses `1048576`, `64K`, `500M`, `10G`, `10GiB`, `1.5G` into bytes (binary units).
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let scale: u64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        "T" | "TB" | "TIB" => 1 << 40,
        _ => return None,
    };
    (number >= 0.0).then_some((number * scale as f64) as u64)
}

/// Parses `90`, `90s`, `15m`, `2h` or `1d` into a duration. Plain numbers are seconds.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let amount: u64 = digits.parse().ok()?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        "ms" => return Some(Duration::from_millis(amount)),
        _ => return None,
    };
    Some(Duration::from_secs(amount.checked_mul(seconds)?))
}

/// Removes `.` components and trailing slashes so that one root has one spelling (and one daemon).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<OsString, OsString> {
        pairs
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect()
    }

    #[cfg(windows)]
    #[test]
    fn cache_dir_defaults_to_the_user_profile_on_windows() {
        let e = env(&[("USERPROFILE", r"C:\Users\u"), ("HOME", "/c/Users/u")]);
        let config = Config::from_env(&e, Path::new(r"C:\w")).unwrap();
        assert_eq!(config.cache_dir, PathBuf::from(r"C:\Users\u\.zccache"));
    }

    #[test]
    fn cache_dir_defaults_to_home() {
        let config = Config::from_env(&env(&[("HOME", "/home/u")]), Path::new("/w")).unwrap();
        assert_eq!(config.cache_dir, PathBuf::from("/home/u/.zccache"));
        assert_eq!(config.idle_timeout, Some(DEFAULT_IDLE_TIMEOUT));
        assert!(!config.disabled);
    }

    #[test]
    fn cache_dir_override_is_absolutized_and_normalized() {
        let e = env(&[("HOME", "/home/u"), ("ZCCACHE_CACHE_DIR", "./c/../cache/")]);
        let config = Config::from_env(&e, Path::new("/work")).unwrap();
        assert_eq!(config.cache_dir, PathBuf::from("/work/cache"));
        let e = env(&[("HOME", "/home/u"), ("ZCCACHE_CACHE_DIR", "")]);
        let config = Config::from_env(&e, Path::new("/work")).unwrap();
        assert_eq!(config.cache_dir, PathBuf::from("/home/u/.zccache"));
    }

    #[test]
    fn missing_home_is_an_error() {
        assert_eq!(
            Config::from_env(&env(&[]), Path::new("/")),
            Err(ConfigError::NoCacheDir)
        );
    }

    #[test]
    fn idle_timeout_values() {
        let check = |value: &str, expected: Option<Option<Duration>>| {
            let e = env(&[("HOME", "/h"), ("ZCCACHE_IDLE_TIMEOUT", value)]);
            let got = Config::from_env(&e, Path::new("/"))
                .ok()
                .map(|c| c.idle_timeout);
            assert_eq!(got, expected, "ZCCACHE_IDLE_TIMEOUT={value}");
        };
        check("30", Some(Some(Duration::from_secs(30))));
        check("5m", Some(Some(Duration::from_secs(300))));
        check("2h", Some(Some(Duration::from_secs(7200))));
        check("0", Some(None));
        check("soon", None);
        check("5y", None);
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1048576"), Some(1 << 20));
        assert_eq!(parse_size("64K"), Some(64 << 10));
        assert_eq!(parse_size("500M"), Some(500 << 20));
        assert_eq!(parse_size("10GiB"), Some(10 << 30));
        assert_eq!(parse_size("1.5G"), Some(3 << 29));
        assert_eq!(parse_size("lots"), None);
        assert_eq!(parse_size("5Q"), None);
    }

    #[test]
    fn max_size_from_env_then_file_then_default() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_str().unwrap();
        let config =
            Config::from_env(&env(&[("ZCCACHE_CACHE_DIR", root)]), Path::new("/")).unwrap();
        assert_eq!(config.max_size(), DEFAULT_MAX_SIZE);
        std::fs::write(
            dir.path().join("config.toml"),
            "# limits\nmax_size = \"2G\"\n",
        )
        .unwrap();
        assert_eq!(config.max_size(), 2 << 30);
        let e = env(&[("ZCCACHE_CACHE_DIR", root), ("ZCCACHE_MAX_SIZE", "100M")]);
        assert_eq!(
            Config::from_env(&e, Path::new("/")).unwrap().max_size(),
            100 << 20
        );
        let e = env(&[("ZCCACHE_CACHE_DIR", root), ("ZCCACHE_MAX_SIZE", "big")]);
        assert!(Config::from_env(&e, Path::new("/")).is_err());
    }

    #[test]
    fn disable_flag() {
        let check = |value: &str, expected: bool| {
            let e = env(&[("HOME", "/h"), ("ZCCACHE_DISABLE", value)]);
            assert_eq!(
                Config::from_env(&e, Path::new("/")).unwrap().disabled,
                expected
            );
        };
        check("1", true);
        check("0", false);
        check("false", false);
        check("yes", true);
    }

    #[test]
    fn session_and_journal_settings() {
        let config = |pairs: &[(&str, &str)]| {
            let mut all = vec![("HOME", "/h")];
            all.extend_from_slice(pairs);
            Config::from_env(&env(&all), Path::new("/"))
        };
        let defaults = config(&[]).unwrap();
        assert_eq!(defaults.session_timeout, DEFAULT_SESSION_TIMEOUT);
        assert_eq!(defaults.journal_max_size, DEFAULT_JOURNAL_MAX_SIZE);
        let set = config(&[
            ("ZCCACHE_SESSION_TIMEOUT", "90"),
            ("ZCCACHE_JOURNAL_MAX_SIZE", "1M"),
        ])
        .unwrap();
        assert_eq!(set.session_timeout, Duration::from_secs(90));
        assert_eq!(set.journal_max_size, 1 << 20);
        assert!(config(&[("ZCCACHE_SESSION_TIMEOUT", "later")]).is_err());
        assert!(config(&[("ZCCACHE_JOURNAL_MAX_SIZE", "big")]).is_err());
    }
}
