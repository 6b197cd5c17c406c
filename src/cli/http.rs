//! The one small HTTP/1.1 client Tablo needs: `GET` a path from a running
//! daemon (its `/journal/*` endpoints, docs/protocol.md §19.3, §19.4) and copy
//! the answer out as it arrives.
//!
//! Blocking std I/O with timeouts, one request per connection
//! (`Connection: close`); the response head is parsed with httparse, as the
//! server parses request heads. It must not run on the smol executor, keep
//! connections, follow redirects or speak TLS, and it reads no more of an
//! answer into memory than its head and a bounded error body.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// How long to wait to connect to the daemon.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// How long to wait for each read from (or write to) the daemon: an answer
/// comes a page at a time, and a page takes milliseconds.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// A response head from the daemon longer than this is not one.
const MAX_RESPONSE_HEAD: usize = 16 * 1024;

/// How many headers a response head may carry: the daemon sends a handful.
const MAX_HEADERS: usize = 32;

/// A chunk-size line (or the CRLF after a chunk) longer than this is not
/// one: a size in hex and perhaps an extension fit in a few bytes.
const MAX_CHUNK_LINE: u64 = 1024;

/// How much of an error answer from the daemon is shown.
const MAX_ERROR_BODY: u64 = 4096;

/// Why a [`fetch`] failed.
#[derive(Debug)]
pub(crate) enum FetchError {
    /// The daemon could not be reached or answered with an error. The
    /// message says what went wrong.
    Daemon(String),
    /// Writing the answer out failed.
    Output(io::Error),
}

/// `GET path` from the daemon at `addr` (HTTP/1.1, `Connection: close`):
/// a 200 answer's body is copied to `out` as it arrives; any other answer
/// is an error that quotes it.
pub(crate) fn fetch(addr: SocketAddr, path: &str, out: &mut impl Write) -> Result<(), FetchError> {
    let failed = |what: &str, e: io::Error| FetchError::Daemon(format!("{what}: {e}"));
    let stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)
        .map_err(|e| failed("cannot connect", e))?;
    stream
        .set_read_timeout(Some(IO_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(IO_TIMEOUT)))
        .map_err(|e| failed("cannot set a timeout", e))?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: tablo/{}\r\nConnection: close\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    );
    (&stream)
        .write_all(request.as_bytes())
        .map_err(|e| failed("cannot send the request", e))?;
    let mut reader = BufReader::new(stream);
    let head = read_response_head(&mut reader).map_err(|e| failed("no answer", e))?;
    if head.status != 200 {
        let mut body = Vec::new();
        let limit = head
            .content_length
            .unwrap_or(MAX_ERROR_BODY)
            .min(MAX_ERROR_BODY);
        let _ = reader.by_ref().take(limit).read_to_end(&mut body);
        let body = String::from_utf8_lossy(&body);
        return Err(FetchError::Daemon(format!(
            "GET {path} answered {}: {}",
            head.status,
            body.trim()
        )));
    }
    let broke_off = |e: io::Error| failed("the answer broke off", e);
    if head.chunked {
        loop {
            let mut size_line = String::new();
            read_line_bounded(&mut reader, &mut size_line).map_err(broke_off)?;
            let size_text = size_line.trim().split(';').next().unwrap_or("");
            let size = u64::from_str_radix(size_text, 16)
                .map_err(|_| FetchError::Daemon(format!("a malformed chunk size {size_line:?}")))?;
            if size == 0 {
                break;
            }
            copy_exactly(&mut reader, size, out)?;
            let mut crlf = String::new();
            read_line_bounded(&mut reader, &mut crlf).map_err(broke_off)?;
        }
        Ok(())
    } else if let Some(len) = head.content_length {
        copy_exactly(&mut reader, len, out)
    } else {
        copy_exactly(&mut reader, u64::MAX, out)
    }
}

/// What matters of a response head.
struct ResponseHead {
    status: u16,
    content_length: Option<u64>,
    chunked: bool,
}

/// Reads the response head, up to and with its blank line, and parses it;
/// the body stays in `reader`.
fn read_response_head(reader: &mut impl BufRead) -> io::Result<ResponseHead> {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > MAX_RESPONSE_HEAD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the response head is too long",
            ));
        }
        let before = head.len();
        reader
            .by_ref()
            .take(MAX_RESPONSE_HEAD as u64)
            .read_until(b'\n', &mut head)?;
        if head.len() == before {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let not_http = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
    match response.parse(&head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(not_http("a cut-off HTTP head".into())),
        Err(e) => return Err(not_http(format!("not an HTTP answer ({e})"))),
    }
    let header = |name: &str| {
        response
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_string())
    };
    Ok(ResponseHead {
        status: response.code.unwrap_or(0),
        content_length: header("content-length").and_then(|v| v.parse().ok()),
        chunked: header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")),
    })
}

/// Reads one line (a chunk-size line or the CRLF after a chunk); a line
/// that does not end before EOF or within [`MAX_CHUNK_LINE`] is an error.
fn read_line_bounded(reader: &mut impl BufRead, line: &mut String) -> io::Result<()> {
    reader.by_ref().take(MAX_CHUNK_LINE).read_line(line)?;
    if line.ends_with('\n') {
        Ok(())
    } else {
        Err(io::ErrorKind::UnexpectedEof.into())
    }
}

/// Copies `len` bytes (until EOF if `len` is `u64::MAX`) from the daemon to
/// `out`, telling a failed read from a failed write.
fn copy_exactly(
    reader: &mut impl BufRead,
    len: u64,
    out: &mut impl Write,
) -> Result<(), FetchError> {
    let mut left = len;
    while left > 0 {
        let buf = reader
            .fill_buf()
            .map_err(|e| FetchError::Daemon(format!("the answer broke off: {e}")))?;
        if buf.is_empty() {
            if len == u64::MAX {
                return Ok(());
            }
            return Err(FetchError::Daemon(format!(
                "the answer broke off {left} bytes before its end"
            )));
        }
        let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        out.write_all(&buf[..n]).map_err(FetchError::Output)?;
        reader.consume(n);
        left -= n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::thread;

    use super::*;

    /// Serves `answer` once on a port of its own and returns the port's
    /// address and the request it got.
    fn serve_once(answer: &'static [u8]) -> (SocketAddr, thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut byte = [0u8; 1];
            while !request.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap() == 1 {
                request.push(byte[0]);
            }
            stream.write_all(answer).unwrap();
            String::from_utf8(request).unwrap()
        });
        (addr, server)
    }

    #[track_caller]
    fn fetched(answer: &'static [u8]) -> (Result<(), String>, Vec<u8>) {
        let (addr, server) = serve_once(answer);
        let mut out = Vec::new();
        let result = fetch(addr, "/journal/export?tail=2", &mut out).map_err(|e| match e {
            FetchError::Daemon(why) => why,
            FetchError::Output(e) => panic!("output error {e}"),
        });
        let request = server.join().unwrap();
        assert!(
            request.starts_with("GET /journal/export?tail=2 HTTP/1.1\r\n")
                && request.contains("\r\nConnection: close\r\n"),
            "{request:?}"
        );
        (result, out)
    }

    #[test]
    fn fetch_reads_chunked_sized_and_unsized_bodies() {
        let (result, out) = fetched(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
              6\r\n{\"a\"}\n\r\n7;x=y\r\n{\"bc\"}\n\r\n0\r\n\r\n",
        );
        assert_eq!(
            (result, out.as_slice()),
            (Ok(()), &b"{\"a\"}\n{\"bc\"}\n"[..])
        );
        let (result, out) = fetched(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n{}\nextra");
        assert_eq!((result, out.as_slice()), (Ok(()), &b"{}\n"[..]));
        let (result, out) = fetched(b"HTTP/1.1 200 OK\r\n\r\n{}\n{}\n");
        assert_eq!((result, out.as_slice()), (Ok(()), &b"{}\n{}\n"[..]));
    }

    #[test]
    fn fetch_reports_errors_and_cut_off_answers() {
        let (result, _) = fetched(
            b"HTTP/1.1 400 Bad Request\r\nContent-Length: 25\r\n\r\ntail=\"x\" is not a number",
        );
        let err = result.unwrap_err();
        assert!(
            err.contains("answered 400: tail=\"x\" is not a number"),
            "{err}"
        );
        // A chunked body without its last chunk was cut off.
        let (result, out) =
            fetched(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{}\n\r\n");
        assert!(result.unwrap_err().contains("broke off"));
        assert_eq!(out, b"{}\n");
        let (result, _) = fetched(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}\n");
        assert!(result.unwrap_err().contains("broke off"));
        let (result, _) = fetched(b"SSH-2.0-OpenSSH\r\n\r\n");
        assert!(result.unwrap_err().contains("not an HTTP answer"));
    }
}
