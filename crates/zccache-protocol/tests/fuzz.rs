//! Fuzzing the frame codec and request decoding: whatever bytes arrive, decoding returns a
//! value or an error and never panics, allocates without bound, or accepts trailing bytes.
//!
//! The seed corpus (`tests/corpus/*.frame`: one valid frame of each message, plus truncated,
//! oversized and foreign ones) is checked in; proptest mutates it. `ZCCACHE_WRITE_CORPUS=1`
//! regenerates the valid seeds after a protocol change.

use proptest::prelude::*;
use std::path::PathBuf;
use zccache_protocol::*;

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

fn seeds() -> Vec<Vec<u8>> {
    let mut seeds: Vec<(String, Vec<u8>)> = std::fs::read_dir(corpus_dir())
        .expect("corpus directory")
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "frame"))
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    seeds.sort();
    assert!(seeds.len() >= 8, "corpus has {} frames", seeds.len());
    seeds.into_iter().map(|(_, bytes)| bytes).collect()
}

/// Every way a frame can be read: header, then payload as either message type.
fn decode_any(frame: &[u8]) {
    if frame.len() < HEADER_LEN {
        return;
    }
    let header: [u8; HEADER_LEN] = frame[..HEADER_LEN].try_into().unwrap();
    let payload = &frame[HEADER_LEN..];
    if let Ok(len) = decode_header(&header) {
        assert!(len <= MAX_FRAME_LEN as usize);
        let body = &payload[..len.min(payload.len())];
        let _ = decode_payload::<Request>(body);
        let _ = decode_payload::<Response>(body);
    }
    let _ = decode_payload::<Request>(payload);
    let _ = decode_payload::<Response>(payload);
}

fn sample_messages() -> Vec<(&'static str, Vec<u8>)> {
    let compile = CompileRequest {
        argv: vec![b"gcc".to_vec(), b"-c".to_vec(), b"a.c".to_vec()],
        program: b"/usr/bin/gcc".to_vec(),
        cwd: b"/w".to_vec(),
        env: vec![(b"PATH".to_vec(), b"/usr/bin".to_vec())],
        client_pid: 42,
        stderr_is_tty: true,
        exec: None,
    };
    vec![
        (
            "compile",
            encode(&Request::Compile(compile.clone())).unwrap(),
        ),
        ("status", encode(&Request::Status).unwrap()),
        ("ping", encode(&Request::Ping).unwrap()),
        (
            "session-start",
            encode(&Request::SessionStart(SessionStartRequest {
                owner_pid: 1,
                journal: Some("/b/j.jsonl".into()),
                log: None,
            }))
            .unwrap(),
        ),
        ("inspect", encode(&Request::Inspect(compile)).unwrap()),
        (
            "compiled",
            encode(&Response::Compiled(CompileReply {
                exit_code: 0,
                stdout: vec![],
                stderr: b"warning: x".to_vec(),
                outcome: Outcome::Hit,
            }))
            .unwrap(),
        ),
        (
            "run-locally",
            encode(&Response::RunLocally {
                reason: "link".into(),
            })
            .unwrap(),
        ),
        (
            "status-report",
            encode(&Response::Status(StatusReport::default())).unwrap(),
        ),
        (
            "progress",
            encode(&Response::Progress {
                stderr:
                    br#"{"$message_type":"artifact","artifact":"/o/liba.rmeta","emit":"metadata"}"#
                        .to_vec(),
            })
            .unwrap(),
        ),
        (
            "fp-check",
            encode(&Request::FpCheck(zccache_protocol::FpCheckRequest {
                cache_file: b"/w/.cache/lint.json".to_vec(),
                cache_type: "two-layer".into(),
                root: b"/w".to_vec(),
                include: vec!["**/*.rs".into()],
                ext: Vec::new(),
                exclude: vec!["target".into()],
            }))
            .unwrap(),
        ),
        (
            "fp-checked",
            encode(&Response::FpChecked {
                changed: false,
                listed_from_watch: true,
            })
            .unwrap(),
        ),
        (
            "answered",
            encode(&Response::Answered {
                exit_code: 0,
                stdout: b"rustc 1.95.0 (59807616e 2026-04-14)\nhost: x86_64-unknown-linux-gnu\n"
                    .to_vec(),
                stderr: Vec::new(),
            })
            .unwrap(),
        ),
    ]
}

#[test]
fn corpus_seeds_decode_as_expected() {
    if std::env::var_os("ZCCACHE_WRITE_CORPUS").is_some() {
        for (name, frame) in sample_messages() {
            std::fs::write(corpus_dir().join(format!("{name}.frame")), &frame).unwrap();
        }
    }
    // The hostile seeds are fixed bytes, written here so they never go stale.
    let mut oversized = b"ZC".to_vec();
    oversized.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    oversized.extend_from_slice(&u32::MAX.to_le_bytes());
    let mut huge_vec = b"ZC".to_vec();
    huge_vec.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    huge_vec.extend_from_slice(&16u32.to_le_bytes());
    huge_vec.extend_from_slice(&0u32.to_le_bytes()); // Request::Compile
    huge_vec.extend_from_slice(&u64::MAX.to_le_bytes()); // argv length
    let hostile: Vec<(&str, Vec<u8>)> = vec![
        ("oversized", oversized),
        ("huge-vec", huge_vec),
        ("foreign", b"GET / HTTP/1.1\r\n\r\n".to_vec()),
        (
            "old-version",
            [b"ZC".as_slice(), &1u16.to_le_bytes(), &0u32.to_le_bytes()].concat(),
        ),
    ];
    for (name, frame) in &hostile {
        std::fs::write(corpus_dir().join(format!("{name}.frame")), frame).unwrap();
    }
    for (name, frame) in sample_messages() {
        let stored = std::fs::read(corpus_dir().join(format!("{name}.frame")))
            .unwrap_or_else(|e| panic!("corpus/{name}.frame: {e}"));
        assert_eq!(stored, frame, "corpus/{name}.frame is stale: regenerate it");
    }
    let header = |frame: &[u8]| decode_header(&frame[..HEADER_LEN].try_into().unwrap());
    assert!(matches!(
        header(&hostile[0].1),
        Err(FrameError::TooLarge(_))
    ));
    assert!(matches!(
        decode_payload::<Request>(&hostile[1].1[HEADER_LEN..]),
        Err(FrameError::Malformed(_))
    ));
    assert_eq!(header(&hostile[2].1), Err(FrameError::BadMagic));
    assert!(matches!(
        header(&hostile[3].1),
        Err(FrameError::VersionMismatch { .. })
    ));
}

fn frame_strategy() -> impl Strategy<Value = Vec<u8>> {
    let seeds = seeds();
    (
        0..seeds.len(),
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        any::<prop::sample::Index>(),
        any::<bool>(),
    )
        .prop_map(move |(seed, flips, cut, truncate)| {
            let mut frame = seeds[seed].clone();
            for (at, byte) in flips {
                if !frame.is_empty() {
                    let i = at.index(frame.len());
                    frame[i] ^= byte;
                }
            }
            if truncate && !frame.is_empty() {
                frame.truncate(cut.index(frame.len()));
            }
            frame
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn mutated_frames_never_panic(frame in frame_strategy()) {
        decode_any(&frame);
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        decode_any(&bytes);
        let _ = decode_payload::<Request>(&bytes);
    }

    #[test]
    fn compile_requests_roundtrip_and_reject_trailing_bytes(
        argv in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 1..12),
        cwd in prop::collection::vec(any::<u8>(), 0..60),
        env in prop::collection::vec(
            (prop::collection::vec(any::<u8>(), 1..20), prop::collection::vec(any::<u8>(), 0..40)),
            0..10,
        ),
        tty in any::<bool>(),
    ) {
        let request = Request::Compile(CompileRequest {
            argv,
            program: b"/usr/bin/cc".to_vec(),
            cwd,
            env,
            client_pid: 7,
            stderr_is_tty: tty,
            exec: None,
        });
        let frame = encode(&request).unwrap();
        let len = decode_header(&frame[..HEADER_LEN].try_into().unwrap()).unwrap();
        prop_assert_eq!(len, frame.len() - HEADER_LEN);
        prop_assert_eq!(decode_payload::<Request>(&frame[HEADER_LEN..]).unwrap(), request);
        let mut longer = frame[HEADER_LEN..].to_vec();
        longer.push(0);
        prop_assert!(decode_payload::<Request>(&longer).is_err());
    }
}
