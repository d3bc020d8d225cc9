//! zccache-ipc: moving frames over the daemon's local endpoint.
//!
//! Both sides are blocking. The client ([`Connection`]) must start without any runtime; the
//! daemon accepts on plain threads ([`Listener`], [`ServerConnection`]) because a hit is a few
//! hundred microseconds of work and every hand-off between threads costs a measurable share of
//! that. Frames come from [`zccache_protocol`]; what a message means is the daemon's business.
//!
//! The endpoint is a Unix socket (mode 0600) on Unix, used directly as before; on Windows a
//! named pipe through `interprocess`, open to the current user only (a security descriptor
//! naming the user) and refusing remote clients ([`sys`] holds the difference).

use serde::{Deserialize, Serialize};
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use zccache_protocol::{decode_header, decode_payload, encode, FrameError, HEADER_LEN};

/// Turns a frame error into an I/O error of kind `InvalidData`, keeping the message.
fn invalid(error: FrameError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error)
}

fn write_frame<T: Serialize>(mut stream: &sys::Stream, message: &T) -> io::Result<()> {
    let frame = encode(message).map_err(invalid)?;
    stream.write_all(&frame)?;
    stream.flush()
}

/// Reads one frame; `Ok(None)` when the peer closed the connection before sending anything.
fn read_frame<T: for<'de> Deserialize<'de>>(mut stream: &sys::Stream) -> io::Result<Option<T>> {
    let mut header = [0u8; HEADER_LEN];
    let mut filled = 0;
    while filled < HEADER_LEN {
        match stream.read(&mut header[filled..]) {
            Ok(0) if filled == 0 => return Ok(None),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let len = decode_header(&header).map_err(invalid)?;
    PAYLOAD.with_borrow_mut(|payload| {
        payload.clear();
        payload.resize(len, 0);
        let read = stream.read_exact(payload);
        let decoded = read.and_then(|()| decode_payload(payload).map(Some).map_err(invalid));
        if payload.capacity() > KEPT_PAYLOAD {
            *payload = Vec::new();
        }
        decoded
    })
}

/// Frames up to this size leave their buffer to the thread's next frame.
const KEPT_PAYLOAD: usize = 256 * 1024;

thread_local! {
    /// The last frame's buffer: a daemon thread reads one request after another, and a fresh
    /// zeroed allocation each time was a tenth of the time of a response-file hit (glibc
    /// consolidates its small free chunks on every large allocation).
    static PAYLOAD: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Encodes a request ahead of [`Connection::call_encoded`], so that nothing stands between
/// connecting and sending.
pub fn encode_request<T: Serialize>(message: &T) -> io::Result<Vec<u8>> {
    encode(message).map_err(invalid)
}

/// A connection from a client to the daemon.
pub struct Connection {
    stream: sys::Stream,
}

impl Connection {
    /// Connects to the daemon's socket.
    pub fn connect(socket: &Path) -> io::Result<Connection> {
        let stream = sys::connect(socket)?;
        Ok(Connection { stream })
    }

    /// The pid of the process at the other end (the daemon that listens), where the system
    /// says (Linux: `SO_PEERCRED`; Windows: the pipe's server process; elsewhere `None`).
    pub fn peer_pid(&self) -> Option<u32> {
        sys::peer_pid(&self.stream)
    }

    /// Bounds how long one read or write may block (`None`: forever, e.g. while a compile runs).
    pub fn set_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        sys::set_read_timeout(&self.stream, timeout)?;
        sys::set_write_timeout(&self.stream, timeout)
    }

    /// Sends one request and waits for its one reply.
    pub fn call<Req: Serialize, Resp: for<'de> Deserialize<'de>>(
        &mut self,
        request: &Req,
    ) -> io::Result<Resp> {
        self.call_encoded(&encode_request(request)?)
    }

    /// [`Connection::call`] with a request from [`encode_request`].
    pub fn call_encoded<Resp: for<'de> Deserialize<'de>>(
        &mut self,
        frame: &[u8],
    ) -> io::Result<Resp> {
        (&self.stream).write_all(frame)?;
        self.next_reply()
    }

    /// Writes `frame` as given and reads what comes back first (at most `reply.len()` bytes):
    /// for a daemon of another protocol version, whose frames this crate does not decode.
    pub fn exchange_raw(&mut self, frame: &[u8], reply: &mut [u8]) -> io::Result<usize> {
        (&self.stream).write_all(frame)?;
        (&self.stream).read(reply)
    }

    /// Reads a further reply to the last request, for requests answered with several frames
    /// (a compile's progress ahead of its result).
    pub fn next_reply<Resp: for<'de> Deserialize<'de>>(&mut self) -> io::Result<Resp> {
        read_frame(&self.stream)?.ok_or_else(|| io::ErrorKind::UnexpectedEof.into())
    }
}

/// The daemon's listening endpoint, private to its owner.
pub struct Listener {
    inner: sys::Listener,
}

impl Listener {
    /// Binds `socket`, replacing a stale socket file. The caller must hold the daemon lock, so
    /// that no live daemon's socket is replaced.
    pub fn bind(socket: &Path) -> io::Result<Listener> {
        Ok(Listener {
            inner: sys::bind(socket)?,
        })
    }

    /// Whether the endpoint at `socket` is still there for clients to find: a Unix socket
    /// file someone removed (a `rm -rf` of the cache) is gone, and a daemon noticing it
    /// exits. A named pipe cannot be removed by anyone but its server: always `true`.
    pub fn still_reachable(socket: &Path) -> bool {
        cfg!(windows) || socket.exists()
    }

    /// Waits for the next client. Several threads may wait at once; each client wakes one.
    pub fn accept(&self) -> io::Result<ServerConnection> {
        let stream = sys::accept(&self.inner)?;
        Ok(ServerConnection {
            stream: Arc::new(stream),
        })
    }
}

/// The daemon's side of one client connection.
pub struct ServerConnection {
    stream: Arc<sys::Stream>,
}

impl ServerConnection {
    /// Reads the next request; `Ok(None)` when the client is done. A client that sends nothing
    /// within `timeout` is dropped.
    pub fn read_request<T: for<'de> Deserialize<'de>>(
        &mut self,
        timeout: Duration,
    ) -> io::Result<Option<T>> {
        sys::set_read_timeout(&self.stream, Some(timeout))?;
        read_frame(&self.stream)
    }

    /// Sends one reply.
    pub fn reply<T: Serialize>(&mut self, message: &T) -> io::Result<()> {
        write_frame(&self.stream, message)
    }

    /// A handle that sends frames ahead of the reply to the request being handled, from
    /// wherever that request's work runs.
    pub fn sink(&self) -> FrameSink {
        FrameSink {
            stream: self.stream.clone(),
        }
    }
}

/// Sends frames to a client while its request is still being handled (see
/// [`ServerConnection::sink`]).
#[derive(Clone)]
pub struct FrameSink {
    stream: Arc<sys::Stream>,
}

impl FrameSink {
    /// Sends one frame; an error means the client has gone.
    pub fn send<T: Serialize>(&self, message: &T) -> io::Result<()> {
        write_frame(&self.stream, message)
    }
}

/// What the endpoint is on this system.
#[cfg(unix)]
mod sys {
    use std::io;
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::net::{UnixListener, UnixStream};
    use std::path::Path;
    use std::time::Duration;

    pub type Stream = UnixStream;
    pub type Listener = UnixListener;

    pub fn connect(socket: &Path) -> io::Result<Stream> {
        UnixStream::connect(socket)
    }

    pub fn set_read_timeout(stream: &Stream, timeout: Option<Duration>) -> io::Result<()> {
        stream.set_read_timeout(timeout)
    }

    pub fn set_write_timeout(stream: &Stream, timeout: Option<Duration>) -> io::Result<()> {
        stream.set_write_timeout(timeout)
    }

    /// A Unix socket of mode 0600, replacing a stale socket file.
    pub fn bind(socket: &Path) -> io::Result<Listener> {
        match std::fs::remove_file(socket) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let listener = UnixListener::bind(socket)?;
        std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))?;
        Ok(listener)
    }

    pub fn accept(listener: &Listener) -> io::Result<Stream> {
        listener.accept().map(|(stream, _)| stream)
    }

    #[cfg(target_os = "linux")]
    pub fn peer_pid(stream: &Stream) -> Option<u32> {
        use std::os::unix::io::AsRawFd;
        // SAFETY: an all-zero ucred is valid; getsockopt writes at most `len` bytes into it.
        let mut credentials: libc::ucred = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
        // SAFETY: as above, on a socket the stream owns.
        let found = unsafe {
            libc::getsockopt(
                stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERCRED,
                (&mut credentials as *mut libc::ucred).cast(),
                &mut len,
            )
        } == 0;
        (found && credentials.pid > 0).then_some(credentials.pid as u32)
    }

    #[cfg(not(target_os = "linux"))]
    pub fn peer_pid(_stream: &Stream) -> Option<u32> {
        None
    }
}

/// What the endpoint is on this system: a named pipe for this user alone.
#[cfg(windows)]
mod sys {
    use crate::pipe_deadline::Deadline;
    use interprocess::local_socket::prelude::*;
    use interprocess::local_socket::{ConnectOptions, GenericFilePath, ListenerOptions};
    use interprocess::os::windows::local_socket::ListenerOptionsExt;
    use interprocess::os::windows::security_descriptor::SecurityDescriptor;
    use interprocess::ConnectWaitMode;
    use std::io::{self, Read, Write};
    use std::os::windows::io::{AsHandle, AsRawHandle, RawHandle};
    use std::path::Path;
    use std::sync::Mutex;
    use std::time::Duration;

    /// A named pipe stream with the read and write timeouts Windows does not give a blocking
    /// pipe (see `pipe_deadline`).
    pub struct Stream {
        inner: interprocess::local_socket::Stream,
        /// (read, write) limits.
        timeouts: Mutex<(Option<Duration>, Option<Duration>)>,
    }
    pub type Listener = interprocess::local_socket::Listener;

    impl Stream {
        fn new(inner: interprocess::local_socket::Stream) -> Stream {
            Stream {
                inner,
                timeouts: Mutex::new((None, None)),
            }
        }

        fn handle(&self) -> RawHandle {
            match &self.inner {
                interprocess::local_socket::Stream::NamedPipe(pipe) => {
                    pipe.as_handle().as_raw_handle()
                }
            }
        }

        fn limits(&self) -> (Option<Duration>, Option<Duration>) {
            *self.timeouts.lock().unwrap_or_else(|e| e.into_inner())
        }

        /// Runs one blocking operation, cancelled at `timeout` (`TimedOut` then).
        fn bounded<T>(
            &self,
            timeout: Option<Duration>,
            op: impl FnOnce() -> io::Result<T>,
        ) -> io::Result<T> {
            let Some(timeout) = timeout else {
                return op();
            };
            let deadline = Deadline::arm(self.handle(), timeout);
            let result = op();
            if deadline.fired() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no answer on the pipe within {timeout:?}"),
                ));
            }
            result
        }
    }

    impl Read for &Stream {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let stream: &Stream = self;
            stream.bounded(stream.limits().0, || (&stream.inner).read(buf))
        }
    }

    impl Write for &Stream {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let stream: &Stream = self;
            stream.bounded(stream.limits().1, || (&stream.inner).write(buf))
        }

        fn flush(&mut self) -> io::Result<()> {
            (&self.inner).flush()
        }
    }

    /// How long a client waits while every instance of the pipe is busy.
    const BUSY_WAIT: Duration = Duration::from_secs(10);

    pub fn connect(pipe: &Path) -> io::Result<Stream> {
        ConnectOptions::new()
            .name(pipe.to_fs_name::<GenericFilePath>()?)
            .wait_mode(ConnectWaitMode::Timeout(BUSY_WAIT))
            .connect_sync()
            .map(Stream::new)
    }

    pub fn set_read_timeout(stream: &Stream, timeout: Option<Duration>) -> io::Result<()> {
        stream.timeouts.lock().unwrap_or_else(|e| e.into_inner()).0 = timeout;
        Ok(())
    }

    pub fn set_write_timeout(stream: &Stream, timeout: Option<Duration>) -> io::Result<()> {
        stream.timeouts.lock().unwrap_or_else(|e| e.into_inner()).1 = timeout;
        Ok(())
    }

    /// The pipe, its access list granting this user (and nobody else) full access; remote
    /// clients are refused (`PIPE_REJECT_REMOTE_CLIENTS`, interprocess's default).
    pub fn bind(pipe: &Path) -> io::Result<Listener> {
        let sddl = format!("D:P(A;;GA;;;{})", crate::windows_user::current_user_sid()?);
        let wide: Vec<u16> = sddl.encode_utf16().chain(std::iter::once(0)).collect();
        let descriptor = SecurityDescriptor::deserialize(
            widestring::U16CStr::from_slice_truncate(&wide)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?,
        )?;
        ListenerOptions::new()
            .name(pipe.to_fs_name::<GenericFilePath>()?)
            .security_descriptor(descriptor)
            .create_sync()
    }

    pub fn accept(listener: &Listener) -> io::Result<Stream> {
        listener.accept().map(Stream::new)
    }

    pub fn peer_pid(stream: &Stream) -> Option<u32> {
        stream.inner.peer_creds().ok()?.pid()
    }
}

#[cfg(windows)]
mod pipe_deadline;

#[cfg(windows)]
mod windows_user;

#[cfg(test)]
mod tests {
    use super::*;
    use zccache_protocol::{Request, Response};

    const WAIT: Duration = Duration::from_secs(5);

    /// A fresh endpoint: a socket in `dir` on Unix, a pipe named for this test on Windows.
    fn endpoint(dir: &Path, tag: &str) -> std::path::PathBuf {
        if cfg!(windows) {
            format!(r"\\.\pipe\zccache-ipc-test-{}-{tag}", std::process::id()).into()
        } else {
            dir.join(format!("{tag}.sock"))
        }
    }

    #[test]
    fn request_and_reply_over_a_real_endpoint() {
        let dir = tempfile::tempdir().unwrap();
        let socket = endpoint(dir.path(), "reply");
        let listener = Listener::bind(&socket).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let client_socket = socket.clone();
        let client = std::thread::spawn(move || {
            let mut conn = Connection::connect(&client_socket).unwrap();
            conn.set_timeout(Some(WAIT)).unwrap();
            let reply: Response = conn.call(&Request::Ping).unwrap();
            reply
        });
        let mut server = listener.accept().unwrap();
        let request: Request = server.read_request(WAIT).unwrap().unwrap();
        assert_eq!(request, Request::Ping);
        server.reply(&Response::Done).unwrap();
        assert_eq!(client.join().unwrap(), Response::Done);
    }

    /// A daemon that takes a request and never answers (hung) must not hold its client: the
    /// call fails once the limit passes, and the connection still answers a later call. On
    /// Windows the limit comes from the pipe deadline watchdog.
    #[test]
    fn a_peer_that_never_answers_times_the_call_out() {
        let dir = tempfile::tempdir().unwrap();
        let socket = endpoint(dir.path(), "silent");
        let listener = Listener::bind(&socket).unwrap();
        let (gave_up, done) = std::sync::mpsc::channel();
        let client_socket = socket.clone();
        let client = std::thread::spawn(move || {
            let mut conn = Connection::connect(&client_socket).unwrap();
            conn.set_timeout(Some(Duration::from_millis(300))).unwrap();
            let first = conn.call::<Request, Response>(&Request::Ping);
            gave_up.send(()).unwrap();
            conn.set_timeout(Some(WAIT)).unwrap();
            let second = conn.next_reply::<Response>();
            (first, second)
        });
        let mut server = listener.accept().unwrap();
        let request: Request = server.read_request(WAIT).unwrap().unwrap();
        assert_eq!(request, Request::Ping);
        // Not a timing assertion: the client must give up at all (a generous bound keeps a
        // hang from hanging the suite).
        done.recv_timeout(Duration::from_secs(60))
            .expect("the client never gave up on a silent peer");
        server.reply(&Response::Done).unwrap();
        let (first, second) = client.join().unwrap();
        let error = first.unwrap_err();
        assert!(
            matches!(
                error.kind(),
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
            ),
            "{error:?}"
        );
        assert_eq!(second.unwrap(), Response::Done);
    }

    #[test]
    fn concurrent_clients_are_each_answered() {
        let dir = tempfile::tempdir().unwrap();
        let socket = endpoint(dir.path(), "many");
        let listener = Arc::new(Listener::bind(&socket).unwrap());
        let servers: Vec<_> = (0..3)
            .map(|_| {
                let listener = listener.clone();
                std::thread::spawn(move || {
                    for _ in 0..4 {
                        let mut conn = listener.accept().unwrap();
                        let request: Request = conn.read_request(WAIT).unwrap().unwrap();
                        assert_eq!(request, Request::Ping);
                        conn.reply(&Response::Done).unwrap();
                    }
                })
            })
            .collect();
        let clients: Vec<_> = (0..12)
            .map(|_| {
                let socket = socket.clone();
                std::thread::spawn(move || {
                    let mut conn = Connection::connect(&socket).unwrap();
                    conn.set_timeout(Some(WAIT)).unwrap();
                    conn.call::<Request, Response>(&Request::Ping).unwrap()
                })
            })
            .collect();
        for client in clients {
            assert_eq!(client.join().unwrap(), Response::Done);
        }
        for server in servers {
            server.join().unwrap();
        }
    }

    #[test]
    fn a_missing_endpoint_is_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let err = Connection::connect(&endpoint(dir.path(), "absent"))
            .err()
            .unwrap();
        assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
    }

    #[test]
    fn garbage_and_silence_are_rejected_without_panicking() {
        let dir = tempfile::tempdir().unwrap();
        let socket = endpoint(dir.path(), "garbage");
        let listener = Listener::bind(&socket).unwrap();
        let client_socket = socket.clone();
        let client = std::thread::spawn(move || {
            let stream = sys::connect(&client_socket).unwrap();
            (&stream).write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
            let _quiet = sys::connect(&client_socket).unwrap();
            std::thread::sleep(Duration::from_millis(300));
        });
        let mut server = listener.accept().unwrap();
        let result: io::Result<Option<Request>> = server.read_request(WAIT);
        assert_eq!(result.unwrap_err().kind(), io::ErrorKind::InvalidData);
        let mut quiet = listener.accept().unwrap();
        if cfg!(unix) {
            // Windows pipes take no read timeout yet (see `sys::set_read_timeout`): there the
            // read ends when the silent client goes away, without a request.
            let result: io::Result<Option<Request>> = quiet.read_request(Duration::from_millis(50));
            assert!(result.is_err(), "a silent client times out");
        } else {
            let result: io::Result<Option<Request>> = quiet.read_request(WAIT);
            assert!(
                matches!(result, Ok(None) | Err(_)),
                "no request from a silent client"
            );
        }
        client.join().unwrap();
    }
}
