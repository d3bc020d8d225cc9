//! Real HTTP servers on 127.0.0.1 for the integration tests: nginx (byte ranges),
//! Python's http.server (no ranges) and a tiny server that drops the first transfer.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// Deterministic pseudo-random bytes (xorshift64*), so tests need no RNG crate and
/// the data does not compress or repeat.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until `port` accepts connections, failing if the child exits first.
fn wait_ready(child: &mut Child, port: u16, what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "{what} exited with {status} before listening; log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        thread::sleep(Duration::from_millis(50));
    }
}

/// nginx serving `root()` with its default byte-range support.
pub struct Nginx {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Nginx {
    pub fn start() -> Nginx {
        Nginx::start_limited(None)
    }

    /// nginx sending each response at most `rate` (nginx's `limit_rate`, e.g. `4m` bytes per
    /// second), for transfers slow enough to be joined, watched and cancelled.
    pub fn start_limited(rate: Option<&str>) -> Nginx {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path();
        std::fs::create_dir_all(base.join("www")).unwrap();
        std::fs::create_dir_all(base.join("logs")).unwrap();
        let port = free_port();
        let p = base.display();
        // master_process off: a single process, so killing it leaves no orphan workers
        // (and no worker switching to an unprivileged user that cannot read the tempdir).
        let conf = format!(
            "daemon off;\nmaster_process off;\npid {p}/nginx.pid;\nerror_log {p}/error.log;\n\
             events {{}}\nhttp {{\n  access_log {p}/access.log;\n  client_body_temp_path {p}/body;\n\
             proxy_temp_path {p}/proxy;\n  fastcgi_temp_path {p}/fastcgi;\n\
             uwsgi_temp_path {p}/uwsgi;\n  scgi_temp_path {p}/scgi;\n\
             server {{\n    listen 127.0.0.1:{port};\n    root {p}/www;\n{limit}  }}\n}}\n",
            limit = rate.map(|r| format!("    limit_rate {r};\n")).unwrap_or_default()
        );
        let conf_path = base.join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let log = base.join("error.log");
        let mut child = Command::new("/usr/sbin/nginx")
            .arg("-p")
            .arg(base)
            .arg("-e")
            .arg(&log)
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start /usr/sbin/nginx (Debian package `nginx`)");
        wait_ready(&mut child, port, "nginx", &log);
        Nginx { child, port, dir }
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("www")
    }

    pub fn put(&self, name: &str, data: &[u8]) {
        std::fs::write(self.root().join(name), data).unwrap();
    }

    pub fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/{name}", self.port)
    }

    /// How many GET requests for `name` nginx has logged (each is logged as it completes).
    pub fn gets(&self, name: &str) -> usize {
        let log = std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default();
        let needle = format!("\"GET /{name} ");
        log.lines().filter(|line| line.contains(&needle)).count()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `python3 -m http.server`: answers every GET with the whole file (no ranges).
pub struct PyHttp {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl PyHttp {
    pub fn start() -> PyHttp {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("www")).unwrap();
        let port = free_port();
        let log = dir.path().join("server.log");
        let mut child = Command::new("python3")
            .args([
                "-m",
                "http.server",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .arg("--directory")
            .arg(dir.path().join("www"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start python3 -m http.server");
        wait_ready(&mut child, port, "python3 http.server", &log);
        PyHttp { child, port, dir }
    }

    pub fn put(&self, name: &str, data: &[u8]) {
        std::fs::write(self.dir.path().join("www").join(name), data).unwrap();
    }

    pub fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/{name}", self.port)
    }
}

impl Drop for PyHttp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Serves one blob with range support, but the first transfer of more than one byte
/// is cut off after half of its bytes (full Content-Length announced, then the
/// connection closes). Later requests are answered completely, honouring `Range`.
pub struct DroppingServer {
    port: u16,
    stop: Arc<AtomicBool>,
    /// Number of body transfers (not counting 1-byte probes) that were served.
    pub transfers: Arc<AtomicUsize>,
    thread: Option<thread::JoinHandle<()>>,
}

impl DroppingServer {
    pub fn start(data: Vec<u8>) -> DroppingServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let transfers = Arc::new(AtomicUsize::new(0));
        let data = Arc::new(data);
        let thread = {
            let stop = stop.clone();
            let transfers = transfers.clone();
            thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(stream) = stream {
                        // Sequential handling is enough: the tests use one connection at a time.
                        let _ = serve_one(stream, &data, &transfers);
                    }
                }
            })
        };
        DroppingServer {
            port,
            stop,
            transfers,
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/blob.bin", self.port)
    }
}

fn serve_one(stream: TcpStream, data: &[u8], transfers: &AtomicUsize) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut range = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("range") {
                let spec = value.trim().strip_prefix("bytes=").unwrap();
                let (a, b) = spec.split_once('-').unwrap();
                let a: u64 = a.parse().unwrap();
                let b: u64 = if b.is_empty() {
                    data.len() as u64 - 1
                } else {
                    b.parse().unwrap()
                };
                range = Some((a, b.min(data.len() as u64 - 1)));
            }
        }
    }
    let mut out = stream;
    let total = data.len() as u64;
    let (status, start, end) = match range {
        Some((a, b)) => ("206 Partial Content", a, b),
        None => ("200 OK", 0, total - 1),
    };
    let body = &data[start as usize..=end as usize];
    let mut head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nETag: \"blob-v1\"\r\nAccept-Ranges: bytes\r\nConnection: close\r\n",
        body.len()
    );
    if range.is_some() {
        head.push_str(&format!("Content-Range: bytes {start}-{end}/{total}\r\n"));
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())?;
    let send = if body.len() > 1 && transfers.fetch_add(1, Ordering::SeqCst) == 0 {
        &body[..body.len() / 2]
    } else {
        body
    };
    out.write_all(send)?;
    out.flush()?;
    out.shutdown(Shutdown::Write)?;
    Ok(())
}

impl Drop for DroppingServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Lists a directory's entry names, sorted (empty if it does not exist).
pub fn list(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
}
