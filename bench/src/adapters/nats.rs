//! The NATS client protocol read from a byte stream (the core TCP listener, or the bytes of
//! NATS-over-WebSocket frames): `INFO`, `MSG`, `HMSG`, `PING`, `PONG`, `+OK`, `-ERR`.
//!
//! The JetStream peer of the `durable` scenario needs the replies to its publishes, not just
//! markers in a stream of bytes, so it parses protocol messages: a message may arrive split
//! over any number of reads, or many in one. Lines and payloads are bounded, and anything the
//! server sends that does not parse is an error, never a panic.

use bytes::{Buf, Bytes, BytesMut};

/// Longest control line accepted (`INFO` with every field is well under this).
const MAX_LINE: usize = 64 * 1024;
/// Largest payload accepted (nats-server's default `max_payload`, 1 MiB).
const MAX_PAYLOAD: usize = 1024 * 1024;

/// One protocol message from the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Info,
    Ping,
    Pong,
    Ok,
    /// `-ERR '<text>'`.
    Err(String),
    /// `MSG` or `HMSG`: `headers` holds the header block of an `HMSG` (`NATS/1.0 <status>`...).
    Msg {
        subject: Bytes,
        reply: Option<Bytes>,
        headers: Option<Bytes>,
        payload: Bytes,
    },
}

/// Why the server's bytes could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("control line longer than {MAX_LINE} bytes")]
    LineTooLong,
    #[error("payload of {0} bytes is over the {MAX_PAYLOAD}-byte limit")]
    PayloadTooLarge(usize),
    #[error("malformed line {0:?}")]
    Malformed(String),
}

/// A streaming parser: [`Parser::feed`] bytes as they arrive, then take [`Parser::next_op`]
/// until it yields `None` (more bytes needed).
#[derive(Default)]
pub struct Parser {
    buf: BytesMut,
}

/// A message header whose payload has not fully arrived yet.
struct MsgHead {
    subject: Bytes,
    reply: Option<Bytes>,
    header_len: usize,
    total_len: usize,
}

impl Parser {
    pub fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete message, `Ok(None)` when more bytes are needed.
    pub fn next_op(&mut self) -> Result<Option<Op>, ParseError> {
        let Some(eol) = self.buf.windows(2).position(|w| w == b"\r\n") else {
            if self.buf.len() > MAX_LINE {
                return Err(ParseError::LineTooLong);
            }
            return Ok(None);
        };
        if eol > MAX_LINE {
            return Err(ParseError::LineTooLong);
        }
        let line = &self.buf[..eol];
        let verb_end = line
            .iter()
            .position(|b| *b == b' ' || *b == b'\t')
            .unwrap_or(line.len());
        let verb = line[..verb_end].to_ascii_uppercase();
        let op = match verb.as_slice() {
            b"MSG" | b"HMSG" => {
                let head = msg_head(line, verb == b"HMSG")?;
                // The payload and its trailing CRLF must be there too.
                let need = eol + 2 + head.total_len + 2;
                if self.buf.len() < need {
                    return Ok(None);
                }
                self.buf.advance(eol + 2);
                let mut body = self.buf.split_to(head.total_len).freeze();
                if &self.buf[..2] != b"\r\n" {
                    return Err(ParseError::Malformed("payload not followed by CRLF".into()));
                }
                self.buf.advance(2);
                let headers = (head.header_len > 0).then(|| body.split_to(head.header_len));
                return Ok(Some(Op::Msg {
                    subject: head.subject,
                    reply: head.reply,
                    headers,
                    payload: body,
                }));
            }
            b"INFO" => Op::Info,
            b"PING" => Op::Ping,
            b"PONG" => Op::Pong,
            b"+OK" => Op::Ok,
            b"-ERR" => {
                let text = String::from_utf8_lossy(&line[verb_end..]);
                Op::Err(text.trim().trim_matches('\'').to_string())
            }
            _ => return Err(malformed(line)),
        };
        self.buf.advance(eol + 2);
        Ok(Some(op))
    }
}

/// `MSG <subject> <sid> [reply] <#bytes>` or `HMSG <subject> <sid> [reply] <#hdr> <#total>`.
fn msg_head(line: &[u8], with_headers: bool) -> Result<MsgHead, ParseError> {
    let fields: Vec<&[u8]> = line
        .split(|b| *b == b' ' || *b == b'\t')
        .filter(|f| !f.is_empty())
        .collect();
    let sizes = if with_headers { 2 } else { 1 };
    // verb, subject, sid, [reply], sizes...
    let reply = match fields.len().checked_sub(3 + sizes) {
        Some(0) => None,
        Some(1) => Some(Bytes::copy_from_slice(fields[3])),
        _ => return Err(malformed(line)),
    };
    let number = |f: &[u8]| -> Result<usize, ParseError> {
        std::str::from_utf8(f)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| malformed(line))
    };
    let total_len = number(fields[fields.len() - 1])?;
    let header_len = if with_headers {
        number(fields[fields.len() - 2])?
    } else {
        0
    };
    if total_len > MAX_PAYLOAD {
        return Err(ParseError::PayloadTooLarge(total_len));
    }
    if header_len > total_len {
        return Err(malformed(line));
    }
    Ok(MsgHead {
        subject: Bytes::copy_from_slice(fields[1]),
        reply,
        header_len,
        total_len,
    })
}

fn malformed(line: &[u8]) -> ParseError {
    let shown = &line[..line.len().min(120)];
    ParseError::Malformed(String::from_utf8_lossy(shown).into_owned())
}

/// The status code of an `HMSG` header block (`NATS/1.0 503` → 503), if it has one.
pub fn status(headers: &[u8]) -> Option<u16> {
    let first = headers.split(|b| *b == b'\r').next()?;
    let text = std::str::from_utf8(first).ok()?;
    text.strip_prefix("NATS/1.0")?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(p: &mut Parser) -> Vec<Op> {
        let mut v = Vec::new();
        while let Some(op) = p.next_op().expect("parses") {
            v.push(op);
        }
        v
    }

    #[test]
    fn reads_messages_split_anywhere() {
        let stream: &[u8] = b"INFO {\"a\":1} \r\nPING\r\nMSG _INBOX.a.7 1 27\r\n\
            {\"stream\":\"chat-0\",\"seq\":1}\r\n+OK\r\nHMSG _INBOX.a.8 1 22 22\r\n\
            NATS/1.0 503\r\nA: b\r\n\r\n\r\nMSG s 2 r.1 0\r\n\r\n-ERR 'Stale Connection'\r\n";
        let want = vec![
            Op::Info,
            Op::Ping,
            Op::Msg {
                subject: Bytes::from_static(b"_INBOX.a.7"),
                reply: None,
                headers: None,
                payload: Bytes::from_static(b"{\"stream\":\"chat-0\",\"seq\":1}"),
            },
            Op::Ok,
            Op::Msg {
                subject: Bytes::from_static(b"_INBOX.a.8"),
                reply: None,
                headers: Some(Bytes::from_static(b"NATS/1.0 503\r\nA: b\r\n\r\n")),
                payload: Bytes::new(),
            },
            Op::Msg {
                subject: Bytes::from_static(b"s"),
                reply: Some(Bytes::from_static(b"r.1")),
                headers: None,
                payload: Bytes::new(),
            },
            Op::Err("Stale Connection".into()),
        ];
        // Whole, and byte by byte.
        let mut p = Parser::default();
        p.feed(stream);
        assert_eq!(all(&mut p), want);
        let mut p = Parser::default();
        let mut got = Vec::new();
        for b in stream {
            p.feed(&[*b]);
            got.extend(all(&mut p));
        }
        assert_eq!(got, want);
        assert_eq!(status(b"NATS/1.0 503\r\n\r\n"), Some(503));
        assert_eq!(status(b"NATS/1.0\r\nA: b\r\n\r\n"), None);
    }

    #[test]
    fn refuses_garbage_without_panicking() {
        for bad in [
            &b"MSG a\r\n"[..],
            b"MSG a 1 x\r\n",
            b"HMSG a 1 9 3\r\n",
            b"MSG a 1 2 3 4\r\n",
            b"HELLO\r\n",
            b"MSG a 1 99999999999\r\n",
            b"MSG a 1 1\r\nxyz\r\n",
        ] {
            let mut p = Parser::default();
            p.feed(bad);
            assert!(p.next_op().is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let mut p = Parser::default();
        p.feed(&vec![b'x'; MAX_LINE + 1]);
        assert_eq!(p.next_op(), Err(ParseError::LineTooLong));
    }
}
