//! The remote tier against real servers on 127.0.0.1, started and stopped here: redis-server
//! (Debian's) and moto_server (PyPI's S3-compatible server). Also a port that refuses and one
//! that accepts and never answers.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use zccache_remote::{breaker, Fetched, Remote, RemoteConfig};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
}

struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn redis() -> Server {
    redis_with(&[])
}

/// redis-server on a free port, with `extra` settings.
fn redis_with(extra: &[&str]) -> Server {
    let port = free_port();
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .args(extra)
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server (apt install redis-server; test.sh does)");
    wait_for(port, "redis-server");
    Server { child, port }
}

fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// One plain HTTP request (moto does not check signatures); the status code.
fn http(port: u16, method: &str, path: &str, body: &[u8]) -> u16 {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    stream.write_all(body).unwrap();
    let mut reply = String::new();
    let _ = stream.read_to_string(&mut reply);
    reply
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

fn moto() -> Server {
    let port = free_port();
    let child = Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("moto_server (pip install 'moto[server]'; test.sh does)");
    wait_for(port, "moto_server");
    assert!(
        matches!(http(port, "PUT", "/zccache-test", b""), 200 | 201),
        "create bucket"
    );
    Server { child, port }
}

/// Lookups on a tier just set up wait this long for its first answer: long enough for a test
/// machine under load, where the default (50 ms on loopback) could skip them.
const PATIENT: &str = "10000";

fn s3_config(port: u16, mode: Option<&str>) -> RemoteConfig {
    let env = |name: &str| match name {
        "ZCCACHE_REMOTE_CONNECT_MS" => Some(PATIENT.to_string()),
        "ZCCACHE_S3_ENDPOINT" => Some(format!("http://127.0.0.1:{port}")),
        "AWS_ACCESS_KEY_ID" => Some("testing".to_string()),
        "AWS_SECRET_ACCESS_KEY" => Some("testing".to_string()),
        "AWS_REGION" => Some("us-east-1".to_string()),
        _ => None,
    };
    RemoteConfig::parse("s3://zccache-test/team", mode, &env).unwrap()
}

fn redis_config(port: u16, mode: Option<&str>) -> RemoteConfig {
    let env = |name: &str| (name == "ZCCACHE_REMOTE_CONNECT_MS").then(|| PATIENT.to_string());
    RemoteConfig::parse(&format!("redis://127.0.0.1:{port}/0"), mode, &env).unwrap()
}

/// A Redis tier with the default wait for the first contact.
fn redis_config_by_default(port: u16) -> RemoteConfig {
    RemoteConfig::parse(&format!("redis://127.0.0.1:{port}/0"), None, &|_| None).unwrap()
}

fn data(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Put, flush, get back; a missing key; a second machine reads it.
fn round_trip(config: RemoteConfig) {
    let a = Remote::open(config.clone()).unwrap();
    let entry = data(300_000, 7);
    assert!(a.put_behind("b/0123".into(), &entry));
    assert_eq!(a.flush(Duration::from_secs(20)), 0);
    assert_eq!(a.stats().uploads, 1, "{:?}", a.stats());
    let config_again = config.clone();
    let b = Remote::open(config).unwrap();
    assert_eq!(b.get("b/0123"), Fetched::Hit(entry));
    assert_eq!(b.get("b/missing"), Fetched::Miss);
    // A key missing a moment ago is not asked for again.
    assert_eq!(b.get("b/missing"), Fetched::Skipped);
    let stats = b.stats();
    assert_eq!(
        (stats.hits, stats.misses, stats.errors),
        (1, 1, 0),
        "{stats:?}"
    );
    assert!(stats.bytes_down > 0);
    // Several keys at once: answers in the order asked.
    let c = Remote::open(config_again).unwrap();
    assert!(c.put_behind("b/second".into(), b"two"));
    assert_eq!(c.flush(Duration::from_secs(20)), 0);
    assert_eq!(
        c.get_many(&["b/absent", "b/second", "b/0123"]),
        vec![
            Fetched::Miss,
            Fetched::Hit(b"two".to_vec()),
            Fetched::Hit(data(300_000, 7))
        ]
    );
}

#[test]
fn redis_round_trip_and_modes() {
    let server = redis();
    round_trip(redis_config(server.port, None));
    // Read-only: nothing goes up. Write-only: nothing is asked.
    let ro = Remote::open(redis_config(server.port, Some("read-only"))).unwrap();
    assert!(!ro.put_behind("b/ro".into(), b"x"));
    let wo = Remote::open(redis_config(server.port, Some("write-only"))).unwrap();
    assert_eq!(wo.get("b/0123"), Fetched::Skipped);
    assert!(wo.put_behind("b/wo".into(), b"written"));
    wo.flush(Duration::from_secs(10));
    let rw = Remote::open(redis_config(server.port, None)).unwrap();
    assert_eq!(rw.get("b/ro"), Fetched::Miss);
    assert_eq!(rw.get("b/wo"), Fetched::Hit(b"written".to_vec()));
}

#[test]
fn s3_round_trip_and_modes() {
    let server = moto();
    round_trip(s3_config(server.port, None));
    let ro = Remote::open(s3_config(server.port, Some("read-only"))).unwrap();
    assert!(!ro.put_behind("b/ro".into(), b"x"));
    let rw = Remote::open(s3_config(server.port, None)).unwrap();
    assert_eq!(rw.get("b/ro"), Fetched::Miss);
}

/// A server that closes idle connections (`timeout`, as managed Redis services set it): the
/// lookup that finds its connection closed makes a new one and is answered; nothing fails.
#[test]
fn a_connection_the_server_closed_while_idle_is_replaced_without_a_failure() {
    let server = redis_with(&["--timeout", "1"]);
    let remote = Remote::open(redis_config(server.port, None)).unwrap();
    assert!(remote.put_behind("b/idle".into(), &data(1000, 5)));
    assert_eq!(remote.flush(Duration::from_secs(10)), 0);
    for _ in 0..2 {
        // Past the server's timeout (it checks idle clients about every 100 ms).
        std::thread::sleep(Duration::from_millis(2500));
        match remote.get("b/idle") {
            Fetched::Hit(bytes) => assert!(bytes == data(1000, 5), "other bytes came back"),
            other => panic!("the lookup after the server closed the connection: {other:?}"),
        }
    }
    let stats = remote.stats();
    assert_eq!((stats.hits, stats.errors), (2, 0), "{stats:?}");
    assert_eq!(remote.problem(), None);
}

#[test]
fn entries_changed_or_truncated_on_the_server_are_refused() {
    let server = redis();
    let remote = Remote::open(redis_config(server.port, None)).unwrap();
    for key in ["b/changed", "b/truncated", "b/garbage"] {
        assert!(remote.put_behind(key.into(), &data(50_000, 3)));
    }
    remote.flush(Duration::from_secs(10));
    let name = |key: &str| redis_cli(server.port, &["--raw", "KEYS", &format!("*{key}")]);
    let changed = name("b/changed");
    assert!(
        !changed.is_empty(),
        "{}",
        redis_cli(server.port, &["KEYS", "*"])
    );
    redis_cli(server.port, &["SETRANGE", &changed, "60", "XXXX"]);
    let truncated = name("b/truncated");
    redis_cli(
        server.port,
        &[
            "EVAL",
            "return redis.call('SET', KEYS[1], string.sub(redis.call('GET', KEYS[1]), 1, 100))",
            "1",
            &truncated,
        ],
    );
    redis_cli(server.port, &["SET", &name("b/garbage"), "not an entry"]);
    let reader = Remote::open(redis_config(server.port, None)).unwrap();
    for key in ["b/changed", "b/truncated", "b/garbage"] {
        assert_eq!(reader.get(key), Fetched::Corrupt, "{key}");
    }
    assert_eq!(reader.stats().corrupt, 3);
    // S3 too: an object put there by something else.
    let s3 = moto();
    let status = http(s3.port, "PUT", "/zccache-test/team/b/s3", b"ZCR1 but short");
    assert!(matches!(status, 200 | 201), "{status}");
    let remote = Remote::open(s3_config(s3.port, None)).unwrap();
    assert_eq!(remote.get("b/s3"), Fetched::Corrupt);
}

#[test]
fn two_machines_writing_one_key_at_once_leave_a_whole_entry() {
    let server = redis();
    let a = Remote::open(redis_config(server.port, None)).unwrap();
    let b = Remote::open(redis_config(server.port, None)).unwrap();
    let (x, y) = (data(2 << 20, 1), data(2 << 20, 2));
    assert!(a.put_behind("m/same".into(), &x));
    assert!(b.put_behind("m/same".into(), &y));
    a.flush(Duration::from_secs(20));
    b.flush(Duration::from_secs(20));
    let reader = Remote::open(redis_config(server.port, None)).unwrap();
    match reader.get("m/same") {
        Fetched::Hit(got) => assert!(got == x || got == y),
        other => panic!("{other:?}"),
    }
}

/// Waits until the tier has given up on its remote (the first contact's answer), at most 10 s.
fn wait_for_problem(remote: &Remote) -> String {
    for _ in 0..1000 {
        if let Some(problem) = remote.problem() {
            return problem;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("the remote was never found unreachable");
}

#[test]
fn a_dead_or_silent_remote_is_skipped_from_the_first_contact() {
    // Refused: nothing listens. The first contact (a connection, made when the tier is set
    // up) finds it; no lookup is sent at all.
    let port = free_port();
    let remote = Remote::open(redis_config_by_default(port)).unwrap();
    for _ in 0..breaker::FAILURES {
        assert_eq!(remote.get("b/x"), Fetched::Skipped);
    }
    let problem = wait_for_problem(&remote);
    assert!(
        problem.contains("unreachable") && problem.contains(&format!("127.0.0.1:{port}")),
        "{problem}"
    );
    assert_eq!(remote.stats().errors, 1);
    // Black-holed: accepts and never answers. Lookups wait for the first contact only within
    // the least wait (the connection was quick) and are skipped, never sent, long before the
    // contact gives up at the tier's deadline; the remote then stays skipped.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let held = std::thread::spawn(move || {
        let mut kept = Vec::new();
        for stream in listener.incoming().take(16) {
            kept.push(stream);
        }
        std::thread::sleep(Duration::from_secs(60));
    });
    let remote = Remote::open(redis_config_by_default(port)).unwrap();
    for _ in 0..breaker::FAILURES {
        assert_eq!(remote.get("b/x"), Fetched::Skipped);
    }
    assert_eq!(
        remote.problem(),
        None,
        "the lookups did not wait for the contact to give up"
    );
    let problem = wait_for_problem(&remote);
    assert!(problem.contains("no answer within"), "{problem}");
    assert_eq!(remote.get("b/x"), Fetched::Skipped);
    let stats = remote.stats();
    assert_eq!(
        (stats.hits, stats.misses, stats.errors),
        (0, 0, 1),
        "nothing was asked"
    );
    drop(held);
}

#[test]
fn a_remote_slower_than_the_build_never_grows_the_queue_past_its_bound() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        for stream in listener.incoming().take(64) {
            kept.push(stream);
        }
        std::thread::sleep(Duration::from_secs(120));
    });
    let remote = Remote::open(redis_config(port, None)).unwrap();
    // Incompressible 1 MiB entries (xorshift), far more than the queue holds.
    let mut queued = 0;
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    for i in 0..120u32 {
        let entry: Vec<u8> = (0..1u32 << 20)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        if remote.put_behind(format!("b/{i}"), &entry) {
            queued += 1;
        }
        assert!(remote.stats().queued_bytes <= zccache_remote::QUEUE_BYTES);
    }
    let stats = remote.stats();
    assert!(
        queued < 120 && stats.dropped == 120 - queued,
        "{queued} {stats:?}"
    );
}

/// An S3 endpoint that rate-limits everything (429 SlowDown, as S3 and R2 do under load):
/// the tier stops asking after its first contact and says why; nothing waits.
#[test]
fn a_rate_limiting_remote_is_skipped() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                use std::io::{BufRead, BufReader};
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                loop {
                    // Headers, then no body (the tier's requests here are HEAD and GET).
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                    }
                    let body = "<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>";
                    let reply = format!(
                        "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if stream.write_all(reply.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    let remote = Remote::open(s3_config(port, None)).unwrap();
    let problem = wait_for_problem(&remote);
    assert!(problem.contains("unreachable"), "{problem}");
    assert_eq!(remote.get("b/x"), Fetched::Skipped);
    assert!(
        !remote.put_behind("b/y".into(), b"y"),
        "not queued while skipped"
    );
    assert_eq!(remote.stats().dropped, 1);
}
