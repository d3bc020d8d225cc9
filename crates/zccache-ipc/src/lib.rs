//! zccache-ipc: moving frames over the daemon's Unix socket.
//!
//! The client side is blocking and small ([`Connection`]): the `zccache` wrapper must start
//! without an async runtime. The server side ([`Listener`], [`read_message`],
//! [`write_message`]) is tokio. Both use [`zccache_protocol`] for the bytes and add nothing to
//! them; what a message means is the daemon's business.

use serde::{Deserialize, Serialize};
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use zccache_protocol::{decode_header, decode_payload, encode, FrameError, HEADER_LEN};

/// Turns a frame error into an I/O error of kind `InvalidData`, keeping the message.
fn invalid(error: FrameError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error)
}

/// A blocking connection from a client to the daemon.
pub struct Connection {
    stream: UnixStream,
}

impl Connection {
    /// Connects to the daemon's socket.
    pub fn connect(socket: &Path) -> io::Result<Connection> {
        let stream = UnixStream::connect(socket)?;
        Ok(Connection { stream })
    }

    /// Bounds how long one read or write may block (`None`: forever, e.g. while a compile runs).
    pub fn set_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.stream.set_read_timeout(timeout)?;
        self.stream.set_write_timeout(timeout)
    }

    /// Sends one request and waits for its one reply.
    pub fn call<Req: Serialize, Resp: for<'de> Deserialize<'de>>(
        &mut self,
        request: &Req,
    ) -> io::Result<Resp> {
        let frame = encode(request).map_err(invalid)?;
        self.stream.write_all(&frame)?;
        let mut header = [0u8; HEADER_LEN];
        self.stream.read_exact(&mut header)?;
        let len = decode_header(&header).map_err(invalid)?;
        let mut payload = vec![0u8; len];
        self.stream.read_exact(&mut payload)?;
        decode_payload(&payload).map_err(invalid)
    }
}

/// The daemon's listening socket, private to its owner (mode 0600).
pub struct Listener {
    inner: tokio::net::UnixListener,
}

impl Listener {
    /// Binds `socket`, replacing a stale socket file. The caller must hold the daemon lock, so
    /// that no live daemon's socket is replaced.
    pub fn bind(socket: &Path) -> io::Result<Listener> {
        match std::fs::remove_file(socket) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let std_listener = std::os::unix::net::UnixListener::bind(socket)?;
        std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))?;
        std_listener.set_nonblocking(true)?;
        let inner = tokio::net::UnixListener::from_std(std_listener)?;
        Ok(Listener { inner })
    }

    /// Waits for the next client.
    pub async fn accept(&self) -> io::Result<tokio::net::UnixStream> {
        let (stream, _) = self.inner.accept().await?;
        Ok(stream)
    }
}

/// Reads one message; `Ok(None)` when the peer closed the connection before sending anything.
pub async fn read_message<T: for<'de> Deserialize<'de>>(
    stream: &mut tokio::net::UnixStream,
) -> io::Result<Option<T>> {
    let mut header = [0u8; HEADER_LEN];
    match stream.read_exact(&mut header).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = decode_header(&header).map_err(invalid)?;
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).await?;
    decode_payload(&payload).map(Some).map_err(invalid)
}

/// Writes one message.
pub async fn write_message<T: Serialize>(
    stream: &mut tokio::net::UnixStream,
    message: &T,
) -> io::Result<()> {
    let frame = encode(message).map_err(invalid)?;
    stream.write_all(&frame).await?;
    stream.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use zccache_protocol::{Request, Response};

    #[test]
    fn request_and_reply_over_a_real_socket() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("s.sock");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime.block_on(async { Listener::bind(&socket) }).unwrap();
        let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let client_socket = socket.clone();
        let client = std::thread::spawn(move || {
            let mut conn = Connection::connect(&client_socket).unwrap();
            let reply: Response = conn.call(&Request::Ping).unwrap();
            reply
        });
        runtime.block_on(async {
            let mut stream = listener.accept().await.unwrap();
            let request: Request = read_message(&mut stream).await.unwrap().unwrap();
            assert_eq!(request, Request::Ping);
            write_message(&mut stream, &Response::Done).await.unwrap();
        });
        assert_eq!(client.join().unwrap(), Response::Done);
    }

    #[test]
    fn garbage_is_rejected_without_panicking() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("s.sock");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime.block_on(async { Listener::bind(&socket) }).unwrap();
        let client_socket = socket.clone();
        let client = std::thread::spawn(move || {
            let mut stream = UnixStream::connect(&client_socket).unwrap();
            stream.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        });
        runtime.block_on(async {
            let mut stream = listener.accept().await.unwrap();
            let result: io::Result<Option<Request>> = read_message(&mut stream).await;
            assert_eq!(result.unwrap_err().kind(), io::ErrorKind::InvalidData);
        });
        client.join().unwrap();
    }
}
