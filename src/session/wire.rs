//! The wire: how a client's queued frames reach its socket.
//!
//! [`Tx`] is a client's sending side as the hub holds it: the outbox and
//! the socket. [`Tx::flush`] is the hub's direct write: while the client's
//! writer task is idle, the frames go out here and now with one
//! non-blocking `sendmsg` (the payload bytes shared by every client, only
//! the 2–10 byte WebSocket header made per client, on the stack), and
//! whatever the socket does not take is left to the writer task. The same
//! code ([`write_now`]) writes the writer task's batches.
//!
//! This module never waits and never spawns: a write that would block
//! returns, and the caller decides who goes on. It knows WebSocket frame
//! heads, not the protocol's ops.

use std::io::{self, IoSlice, Write};
use std::mem::MaybeUninit;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use smol::Async;

use crate::outbox::{Batch, Item, Outbox};

/// At most this many frames go into one `sendmsg` (two iovecs each, well
/// under the kernel's 1024): ~16 KiB of ticks, so a long backlog goes out
/// in a few large writes while the iovecs stay on the stack.
pub const FRAMES_PER_WRITE: usize = 64;

/// The longest WebSocket frame header: 2 bytes, plus 8 of extended length.
const MAX_HEAD: usize = 10;

/// A client's sending side as the hub holds it: the outbox, and the socket
/// for the writes the hub makes itself while the client's writer task is
/// idle ([`Tx::flush`]).
#[derive(Clone, Debug)]
pub struct Tx {
    outbox: Arc<Outbox>,
    socket: Option<Socket>,
}

/// The socket's sending side: non-blocking, shared with the reader.
pub(crate) type Socket = Arc<Async<std::net::TcpStream>>;

impl Tx {
    /// The sending side of a connected client.
    pub(crate) fn new(outbox: Arc<Outbox>, socket: Socket) -> Tx {
        Tx {
            outbox,
            socket: Some(socket),
        }
    }

    /// A sending side with no socket: [`Tx::flush`] only wakes the writer.
    /// For tests that drain the outbox themselves.
    #[cfg(test)]
    pub fn detached(outbox: Arc<Outbox>) -> Tx {
        Tx {
            outbox,
            socket: None,
        }
    }

    /// The client's outbox.
    pub fn outbox(&self) -> &Arc<Outbox> {
        &self.outbox
    }

    /// Sends what the hub queued for this client since the last flush.
    /// While the client's writer task is idle, the frames are written here
    /// and now with `sendmsg` on the non-blocking socket (no task wake-up,
    /// no copy); whatever the socket does not take at once, and anything
    /// but frames (a replay, control bytes, a close), is left to the writer
    /// task, woken for it. `batch` is scratch space, left empty.
    pub fn flush(&self, batch: &mut Batch) {
        let Some(socket) = &self.socket else {
            self.outbox.ring();
            return;
        };
        if !self.outbox.begin_flush(batch) {
            return;
        }
        let mut cursor = Cursor::default();
        let rest = match write_now(socket.get_ref(), &[], batch, &mut cursor) {
            Ok(true) => Vec::new(),
            Ok(false) => unwritten(&[], batch, &cursor),
            Err(e) => {
                // The client is gone or its socket broke: the writer finds
                // out on its next write and ends the session.
                log::debug!("writing to a client failed: {e}");
                unwritten(&[], batch, &cursor)
            }
        };
        batch.clear();
        self.outbox.end_flush(&rest);
    }
}

/// How far a batch has been written.
#[derive(Default)]
pub(crate) struct Cursor {
    /// Control bytes written.
    pub(crate) control: usize,
    /// The first slot not fully written.
    pub(crate) slot: usize,
    /// Bytes of that slot's frame (header and payload) written.
    pub(crate) offset: usize,
}

/// Writes what is left of `control` and the frames from `cursor` up to the
/// next replay marker (or the end), [`FRAMES_PER_WRITE`] frames per
/// `sendmsg`, until they are all written (true, with `cursor` on the marker
/// or past the end) or the socket would block (false).
pub(crate) fn write_now(
    socket: &std::net::TcpStream,
    control: &[u8],
    batch: &Batch,
    cursor: &mut Cursor,
) -> io::Result<bool> {
    loop {
        // Left uninitialized: filling ~2 KiB of iovecs for a batch of one
        // frame cost more than the rest of the write path.
        let mut heads = [const { MaybeUninit::<[u8; MAX_HEAD]>::uninit() }; FRAMES_PER_WRITE];
        let mut iov = [const { MaybeUninit::<IoSlice<'_>>::uninit() }; 2 * FRAMES_PER_WRITE + 1];
        let mut n = 0;
        if cursor.control < control.len() {
            iov[n].write(IoSlice::new(&control[cursor.control..]));
            n += 1;
        }
        // Pass 1: the headers of the next frames.
        let mut frames = 0;
        let mut end = cursor.slot;
        while frames < FRAMES_PER_WRITE && end < batch.slots() {
            match batch.get(end) {
                Some(Item::Frame(frame)) => {
                    let mut head = [0u8; MAX_HEAD];
                    encode_head(&mut head, frame.text.len());
                    heads[frames].write(head);
                    frames += 1;
                }
                Some(Item::Replay(_)) => break,
                None => {}
            }
            end += 1;
        }
        // Pass 2: header and payload iovecs, skipping what was written.
        let mut k = 0;
        for slot in cursor.slot..end {
            let Some(Item::Frame(frame)) = batch.get(slot) else {
                continue;
            };
            // SAFETY: pass 1 wrote heads[0..frames], one per frame in
            // cursor.slot..end, in this order.
            let head = unsafe { heads[k].assume_init_ref() };
            k += 1;
            let head = &head[..head_len(frame.text.len())];
            let skip = if slot == cursor.slot {
                cursor.offset
            } else {
                0
            };
            if skip < head.len() {
                iov[n].write(IoSlice::new(&head[skip..]));
                iov[n + 1].write(IoSlice::new(frame.text.as_bytes()));
                n += 2;
            } else {
                iov[n].write(IoSlice::new(&frame.text.as_bytes()[skip - head.len()..]));
                n += 1;
            }
        }
        if n == 0 {
            cursor.slot = end;
            cursor.offset = 0;
            return Ok(true);
        }
        // SAFETY: iov[0..n] were written above; MaybeUninit<T> has T's layout.
        let iov = unsafe { std::slice::from_raw_parts(iov.as_ptr().cast::<IoSlice<'_>>(), n) };
        let mut written = match send_vectored(socket, iov) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(written) => written,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let from_control = written.min(control.len() - cursor.control);
        cursor.control += from_control;
        written -= from_control;
        let mut all = true;
        for slot in cursor.slot..end {
            let Some(Item::Frame(frame)) = batch.get(slot) else {
                continue;
            };
            let left = head_len(frame.text.len()) + frame.text.len() - cursor.offset;
            if written >= left {
                written -= left;
                cursor.slot = slot + 1;
                cursor.offset = 0;
            } else {
                cursor.slot = slot;
                cursor.offset += written;
                all = false;
                break;
            }
        }
        if all && cursor.control == control.len() && frames < FRAMES_PER_WRITE {
            // Everything up to the marker or the end is out.
            cursor.slot = end;
            cursor.offset = 0;
            return Ok(true);
        }
    }
}

/// `sendmsg` of `iov`: what `write_vectored` (`writev`) does, without the
/// file layer's share of the syscall (~10 % of a small send on loopback).
fn send_vectored(socket: &std::net::TcpStream, iov: &[IoSlice<'_>]) -> io::Result<usize> {
    // SAFETY: an all-zero msghdr is valid (no address, no control data).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    // IoSlice is ABI-compatible with iovec on Unix; sendmsg only reads it.
    msg.msg_iov = iov.as_ptr().cast_mut().cast::<libc::iovec>();
    msg.msg_iovlen = iov.len() as _;
    // SAFETY: msg points at `iov`, which lives across the call; the fd is
    // the socket's own.
    let sent = unsafe {
        libc::sendmsg(
            socket.as_raw_fd(),
            &msg,
            libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
        )
    };
    if sent < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(sent as usize)
    }
}

/// The bytes of `control` and of the frames in `batch` that `cursor` has
/// not reached, as they would have been written (up to a replay marker).
fn unwritten(control: &[u8], batch: &Batch, cursor: &Cursor) -> Vec<u8> {
    let mut rest = control[cursor.control.min(control.len())..].to_vec();
    for slot in cursor.slot..batch.slots() {
        match batch.get(slot) {
            Some(Item::Frame(frame)) => {
                let mut head = [0u8; MAX_HEAD];
                let len = encode_head(&mut head, frame.text.len());
                let skip = if slot == cursor.slot {
                    cursor.offset
                } else {
                    0
                };
                let mut whole = head[..len].iter().chain(frame.text.as_bytes());
                rest.extend(whole.by_ref().skip(skip));
            }
            Some(Item::Replay(_)) => break,
            None => {}
        }
    }
    rest
}

/// The length of the header [`encode_head`] writes for `len` bytes.
fn head_len(len: usize) -> usize {
    match len {
        0..126 => 2,
        126..=0xffff => 4,
        _ => 10,
    }
}

/// Writes the header of an unmasked, final text frame of `len` bytes into
/// `out`; returns its length.
fn encode_head(out: &mut [u8; MAX_HEAD], len: usize) -> usize {
    out[0] = 0x81;
    if len < 126 {
        out[1] = len as u8;
        2
    } else if let Ok(len) = u16::try_from(len) {
        out[1] = 126;
        out[2..4].copy_from_slice(&len.to_be_bytes());
        4
    } else {
        out[1] = 127;
        out[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    }
}

/// Appends `text` as one text frame to `out`.
pub(crate) fn push_frame(out: &mut Vec<u8>, text: &[u8]) {
    let mut head = [0u8; MAX_HEAD];
    let len = encode_head(&mut head, text.len());
    out.extend_from_slice(&head[..len]);
    out.extend_from_slice(text);
}

/// Writes all of `bytes`, waiting for the socket as needed.
pub(crate) async fn write_all(socket: &Socket, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        let n = socket.write_with(|s| (&*s).write(bytes)).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        bytes = &bytes[n..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::net::{TcpListener, TcpStream as StdTcpStream};

    use async_tungstenite::tungstenite::Utf8Bytes;

    use super::*;
    use crate::outbox::{Frame, Outbox};

    /// The text frames in `bytes`, which must hold whole frames only.
    fn parse_frames(mut bytes: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            assert_eq!(bytes[0], 0x81, "a final text frame");
            let (len, at) = match bytes[1] {
                126 => (u16::from_be_bytes([bytes[2], bytes[3]]) as usize, 4),
                127 => (
                    u64::from_be_bytes(bytes[2..10].try_into().expect("8 bytes")) as usize,
                    10,
                ),
                n => (n as usize, 2),
            };
            out.push(String::from_utf8(bytes[at..at + len].to_vec()).expect("utf-8"));
            bytes = &bytes[at + len..];
        }
        out
    }

    #[test]
    fn a_batch_larger_than_the_socket_takes_comes_out_whole_and_in_order() {
        // Frames of every header size, empty slots left by conflation, and
        // a socket that takes only part: what write_now wrote plus what
        // unwritten returns must be exactly the frames, in order.
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let mut reader =
            StdTcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (writer, _) = listener.accept().expect("accept");
        writer.set_nonblocking(true).expect("nonblocking");
        let small: libc::c_int = 4096;
        // SAFETY: setsockopt reads an int from a live local.
        unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&writer),
                libc::SOL_SOCKET,
                libc::SO_SNDBUF,
                (&small as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        let outbox = Outbox::new();
        let mut texts = Vec::new();
        for i in 0..crate::outbox::CONFLATE_AFTER + 40 {
            // Under the outbox's byte cap, over what the socket takes.
            let size = if i == 50 {
                70_000
            } else {
                [5, 300, 9_000][i % 3]
            };
            let text = format!("{i:05}{}", "x".repeat(size));
            outbox.push(Frame {
                text: Utf8Bytes::from(text.clone()),
                key: (i % 3 == 1).then(|| Arc::from(format!("S{}", i % 7))),
            });
            texts.push(text);
        }
        let mut batch = Batch::default();
        let mut control = Vec::new();
        assert!(!outbox.take(&mut batch, &mut control).killed);
        let expected: Vec<String> = batch
            .iter()
            .map(|item| match item {
                Item::Frame(f) => f.text.to_string(),
                Item::Replay(_) => unreachable!(),
            })
            .collect();
        assert!(expected.len() < texts.len(), "some ticks were conflated");
        let mut cursor = Cursor::default();
        let head = b"\x8a\x02hi";
        let done = write_now(&writer, head, &batch, &mut cursor).expect("write");
        assert!(!done, "the socket should not take ~400 KiB at once");
        let rest = unwritten(head, &batch, &cursor);
        drop(writer);
        let mut got = Vec::new();
        reader.read_to_end(&mut got).expect("read");
        got.extend_from_slice(&rest);
        assert_eq!(&got[..4], head);
        assert_eq!(parse_frames(&got[4..]), expected);
    }
}
