//! End-to-end downloads against real servers on 127.0.0.1.

mod common;

use std::cell::Cell;
use std::path::Path;
use std::process::Command;

use common::{list, random_bytes, sha256_hex, DroppingServer, Nginx, PyHttp};
use zccache_download::{download, DownloadError, DownloadRequest};

const MIB: usize = 1024 * 1024;

fn assert_no_leftovers(dest: &Path) {
    let dir = dest.parent().unwrap();
    let name = dest.file_name().unwrap().to_string_lossy().into_owned();
    let left: Vec<_> = list(dir)
        .into_iter()
        .filter(|n| n.starts_with(&name) && *n != name)
        .collect();
    assert!(
        left.is_empty(),
        "leftover files next to destination: {left:?}"
    );
}

#[test]
fn http_server_without_ranges_uses_one_connection() {
    let server = PyHttp::start();
    let data = random_bytes(3 * MIB + 17, 1);
    server.put("plain.bin", &data);
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("nested/dir/plain.bin");
    let mut request = DownloadRequest::new(server.url("plain.bin"), &dest);
    request.min_segment_size = 64 * 1024;
    request.sha256 = Some(sha256_hex(&data));

    let done = download(&request, None).unwrap();

    assert_eq!(done.connections_used, 1);
    assert_eq!(done.bytes, data.len() as u64);
    assert_eq!(done.sha256, sha256_hex(&data));
    assert_eq!(done.resumed_from, 0);
    assert_eq!(done.path, dest);
    assert_eq!(std::fs::read(&dest).unwrap(), data);
    assert_no_leftovers(&dest);
}

#[test]
fn nginx_ranged_download_uses_several_connections() {
    let server = Nginx::start();
    let data = random_bytes(40 * MIB, 2);
    server.put("big.bin", &data);
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("big.bin");
    let mut request = DownloadRequest::new(server.url("big.bin"), &dest);
    request.min_segment_size = MIB as u64;
    // Upper case on purpose: the comparison is case-insensitive.
    request.sha256 = Some(sha256_hex(&data).to_uppercase());
    let last = Cell::new((0u64, None));
    let report = |done: u64, total: Option<u64>| last.set((done, total));

    let done = download(&request, Some(&report)).unwrap();

    assert!(done.connections_used > 1, "{done:?}");
    assert!(done.connections_used <= 8, "{done:?}");
    assert_eq!(done.sha256, sha256_hex(&data));
    assert_eq!(done.bytes, data.len() as u64);
    assert_eq!(last.get(), (data.len() as u64, Some(data.len() as u64)));
    assert_eq!(
        sha256_hex(&std::fs::read(&dest).unwrap()),
        sha256_hex(&data)
    );
    assert_no_leftovers(&dest);
}

#[test]
fn explicit_multipart_concatenates_parts_in_order() {
    let nginx = Nginx::start();
    let python = PyHttp::start();
    let parts = [
        random_bytes(MIB + 3, 10),
        random_bytes(2 * MIB, 11),
        random_bytes(700_001, 12),
    ];
    nginx.put("part0", &parts[0]);
    // A part from a server without ranges exercises the plain-GET part path.
    python.put("part1", &parts[1]);
    nginx.put("part2", &parts[2]);
    let whole: Vec<u8> = parts.concat();
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("joined.bin");
    let mut request = DownloadRequest::new("", &dest);
    request.part_urls = vec![nginx.url("part0"), python.url("part1"), nginx.url("part2")];
    request.sha256 = Some(sha256_hex(&whole));

    let done = download(&request, None).unwrap();

    assert_eq!(done.bytes, whole.len() as u64);
    assert_eq!(done.connections_used, 3);
    assert_eq!(std::fs::read(&dest).unwrap(), whole);
    assert_no_leftovers(&dest);
}

#[test]
fn wrong_sha256_publishes_nothing() {
    let server = Nginx::start();
    let data = random_bytes(5 * MIB, 3);
    server.put("file.bin", &data);
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("file.bin");
    let wrong = "00".repeat(32);
    let mut request = DownloadRequest::new(server.url("file.bin"), &dest);
    request.min_segment_size = MIB as u64;
    request.sha256 = Some(wrong.clone());

    let err = download(&request, None).unwrap_err();

    match &err {
        DownloadError::Sha256Mismatch {
            expected, actual, ..
        } => {
            assert_eq!(expected, &wrong);
            assert_eq!(actual, &sha256_hex(&data));
        }
        other => panic!("expected a sha256 mismatch, got {other}"),
    }
    let message = err.to_string();
    assert!(
        message.contains(&wrong) && message.contains(&sha256_hex(&data)),
        "{message}"
    );
    assert!(!dest.exists());
    assert_eq!(list(out.path()), Vec::<String>::new());
}

#[test]
fn interrupted_download_resumes_where_it_stopped() {
    let data = random_bytes(3 * MIB + 5, 4);
    let server = DroppingServer::start(data.clone());
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("resumed.bin");
    let mut request = DownloadRequest::new(server.url(), &dest);
    request.sha256 = Some(sha256_hex(&data));

    let err = download(&request, None).unwrap_err();
    assert!(err.to_string().contains(&server.url()), "{err}");
    assert!(!dest.exists(), "a failed download must not publish");
    assert!(out.path().join("resumed.bin.part").exists());
    assert!(out.path().join("resumed.bin.part.json").exists());

    let done = download(&request, None).unwrap();

    assert!(done.resumed_from > 0, "{done:?}");
    assert!(done.resumed_from < data.len() as u64, "{done:?}");
    assert_eq!(done.sha256, sha256_hex(&data));
    assert_eq!(std::fs::read(&dest).unwrap(), data);
    assert_eq!(
        server.transfers.load(std::sync::atomic::Ordering::SeqCst),
        2
    );
    assert_no_leftovers(&dest);
}

#[test]
fn changed_file_is_not_resumed() {
    let server = Nginx::start();
    let first = random_bytes(2 * MIB, 5);
    server.put("changing.bin", &first);
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("changing.bin");
    // A stale part file and a sidecar claiming everything is done, from a different
    // file version (different length, no validators).
    std::fs::write(out.path().join("changing.bin.part"), vec![0u8; 1000]).unwrap();
    std::fs::write(
        out.path().join("changing.bin.part.json"),
        format!(
            r#"{{"version":1,"url":"{}","sources":[{{"url":"{}","length":1000,"etag":null,"last_modified":null,"ranges":true}}],"total":1000,"segments":[{{"source":0,"remote_start":0,"file_start":0,"len":1000,"done":1000}}]}}"#,
            server.url("changing.bin"),
            server.url("changing.bin")
        ),
    )
    .unwrap();
    let request = DownloadRequest::new(server.url("changing.bin"), &dest);

    let done = download(&request, None).unwrap();

    assert_eq!(done.resumed_from, 0);
    assert_eq!(std::fs::read(&dest).unwrap(), first);
    assert_no_leftovers(&dest);
}

#[test]
fn not_found_names_url_and_status() {
    let server = Nginx::start();
    let out = tempfile::tempdir().unwrap();
    let url = server.url("missing.bin");
    let request = DownloadRequest::new(&url, out.path().join("missing.bin"));

    let err = download(&request, None).unwrap_err();

    assert!(
        matches!(&err, DownloadError::Http { url: u, status: 404 } if *u == url),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains(&url) && message.contains("404"),
        "{message}"
    );
    assert!(!out.path().join("missing.bin").exists());
}

#[test]
fn cli_without_the_daemon_prints_json_and_fails_with_exit_1() {
    let server = Nginx::start();
    let data = random_bytes(MIB, 6);
    server.put("cli.bin", &data);
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("cli.bin");
    let exe = env!("CARGO_BIN_EXE_zccache-download");

    let ok = Command::new(exe)
        .args(["--json", "fetch", "--no-daemon", &server.url("cli.bin")])
        .arg(&dest)
        .args(["--sha256", &sha256_hex(&data)])
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(json["sha256"], sha256_hex(&data));
    assert_eq!(json["cache_path"], dest.to_str().unwrap());
    assert_eq!(json["downloaded_bytes"], data.len() as u64);
    assert_eq!(std::fs::read(&dest).unwrap(), data);

    let missing = server.url("nope.bin");
    let failed = Command::new(exe)
        .args(["fetch", "--no-daemon", &missing])
        .arg(out.path().join("nope.bin"))
        .output()
        .unwrap();
    assert_eq!(failed.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(
        stderr.contains(&missing) && stderr.contains("404"),
        "{stderr}"
    );
    assert!(failed.stdout.is_empty());
}
