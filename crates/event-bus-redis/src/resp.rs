//! RESP2, read straight from bytes: a resumable check that a whole reply is
//! in a buffer, and a cursor over a complete reply that hands out borrowed
//! slices. The hot read path (`XREADGROUP`) builds its deliveries from these
//! slices, without a tree of values in between. Malformed input is an
//! error, never a panic.

use crate::wire::EntryId;

/// The deepest nesting accepted (an `XREADGROUP` reply is 4 deep).
const MAX_DEPTH: usize = 16;

/// Malformed RESP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProtocolError(pub String);

impl std::fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "malformed reply from Redis: {}", self.0)
    }
}

fn bad(what: impl Into<String>) -> ProtocolError {
    ProtocolError(what.into())
}

/// Where a reply ends, found incrementally as bytes arrive: call
/// [`Frame::scan`] after every read until it says how long the reply is.
#[derive(Debug, Default)]
pub(crate) struct Frame {
    /// Bytes of the reply checked so far (whole elements only).
    pos: usize,
    /// Elements still expected by each open array, innermost last.
    open: Vec<u64>,
}

impl Frame {
    /// Forget the reply being scanned (start a new one).
    pub(crate) fn reset(&mut self) {
        self.pos = 0;
        self.open.clear();
    }

    /// The length of the reply at the start of `buf` once it is all there
    /// (`Ok(None)`: more bytes are needed). `buf` must start at the reply
    /// and only grow between calls.
    pub(crate) fn scan(&mut self, buf: &[u8]) -> Result<Option<usize>, ProtocolError> {
        loop {
            let Some((kind, line, next)) = header(buf, self.pos)? else {
                return Ok(None);
            };
            match kind {
                b'+' | b'-' | b':' => self.pos = next,
                b'$' => match number(line)? {
                    -1 => self.pos = next,
                    n if n >= 0 => {
                        let end = next
                            .checked_add(n as usize)
                            .and_then(|e| e.checked_add(2))
                            .ok_or_else(|| bad("a string is too long"))?;
                        if buf.len() < end {
                            return Ok(None);
                        }
                        if &buf[end - 2..end] != b"\r\n" {
                            return Err(bad("a string does not end with CRLF"));
                        }
                        self.pos = end;
                    }
                    n => return Err(bad(format!("a string of length {n}"))),
                },
                b'*' => match number(line)? {
                    -1 | 0 => self.pos = next,
                    n if n > 0 => {
                        if self.open.len() >= MAX_DEPTH {
                            return Err(bad("arrays nested too deep"));
                        }
                        self.pos = next;
                        self.open.push(n as u64);
                        continue;
                    }
                    n => return Err(bad(format!("an array of length {n}"))),
                },
                other => return Err(bad(format!("unexpected type byte {other:#04x}"))),
            }
            // One element is complete: close the arrays it completes.
            loop {
                match self.open.last_mut() {
                    None => return Ok(Some(self.pos)),
                    Some(left) => {
                        *left -= 1;
                        if *left > 0 {
                            break;
                        }
                        self.open.pop();
                    }
                }
            }
        }
    }
}

/// A header line: its type byte, its text, and where the element's body
/// starts.
type Header<'a> = (u8, &'a [u8], usize);

/// The header line at `pos`, if the whole line is in `buf`.
fn header(buf: &[u8], pos: usize) -> Result<Option<Header<'_>>, ProtocolError> {
    let rest = buf.get(pos..).unwrap_or_default();
    let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
        if rest.len() > 64 * 1024 {
            return Err(bad("a header line longer than 64 KiB"));
        }
        return Ok(None);
    };
    if nl < 2 || rest[nl - 1] != b'\r' {
        return Err(bad("a line without a type or not ending with CRLF"));
    }
    Ok(Some((rest[0], &rest[1..nl - 1], pos + nl + 1)))
}

fn number(text: &[u8]) -> Result<i64, ProtocolError> {
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    let n = if digits.is_empty() || digits.len() > 18 {
        None
    } else {
        digits
            .iter()
            .try_fold(0i64, |n, &c| c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0')))
    };
    match n {
        Some(n) if negative => Ok(-n),
        Some(n) => Ok(n),
        None => Err(bad(format!("{:?} is not a number", String::from_utf8_lossy(text)))),
    }
}

/// One element of a reply, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Item<'a> {
    /// `+text`
    Status(&'a [u8]),
    /// `-text`
    Error(&'a [u8]),
    /// `:n`
    Int(i64),
    /// `$n` and its bytes
    Bulk(&'a [u8]),
    /// `$-1` or `*-1`
    Nil,
    /// `*n`: the next `n` items are its elements.
    Array(usize),
}

/// A cursor over a complete reply (checked by [`Frame::scan`], though it
/// checks bounds again).
#[derive(Debug, Clone)]
pub(crate) struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    /// A cursor at the start of `buf`.
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Cursor { buf, pos: 0 }
    }

    /// Where the cursor is.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// The next item.
    pub(crate) fn next_item(&mut self) -> Result<Item<'a>, ProtocolError> {
        let (kind, line, next) = header(self.buf, self.pos)?.ok_or_else(|| bad("the reply is cut short"))?;
        let item = match kind {
            b'+' => Item::Status(line),
            b'-' => Item::Error(line),
            b':' => Item::Int(number(line)?),
            b'$' => match number(line)? {
                -1 => Item::Nil,
                n if n >= 0 => {
                    let end = next.saturating_add(n as usize);
                    let body = self.buf.get(next..end).ok_or_else(|| bad("the reply is cut short"))?;
                    self.pos = end.saturating_add(2);
                    return Ok(Item::Bulk(body));
                }
                n => return Err(bad(format!("a string of length {n}"))),
            },
            b'*' => match number(line)? {
                -1 => Item::Nil,
                n if n >= 0 => Item::Array(n as usize),
                n => return Err(bad(format!("an array of length {n}"))),
            },
            other => return Err(bad(format!("unexpected type byte {other:#04x}"))),
        };
        self.pos = next;
        Ok(item)
    }

    /// Skip one element, with everything in it.
    pub(crate) fn skip(&mut self) -> Result<(), ProtocolError> {
        let mut left: u64 = 1;
        while left > 0 {
            left -= 1;
            if let Item::Array(n) = self.next_item()? {
                left += n as u64;
            }
        }
        Ok(())
    }

    /// The length of the array that comes next (nil counts as empty).
    pub(crate) fn array(&mut self, what: &str) -> Result<usize, ProtocolError> {
        match self.next_item()? {
            Item::Array(n) => Ok(n),
            Item::Nil => Ok(0),
            other => Err(bad(format!("{what} is {}, not an array", describe(&other)))),
        }
    }

    /// The string that comes next.
    pub(crate) fn bulk(&mut self, what: &str) -> Result<&'a [u8], ProtocolError> {
        match self.next_item()? {
            Item::Bulk(b) | Item::Status(b) => Ok(b),
            other => Err(bad(format!("{what} is {}, not a string", describe(&other)))),
        }
    }
}

/// What kind of item, for error messages.
pub(crate) fn describe(item: &Item<'_>) -> &'static str {
    match item {
        Item::Status(_) => "a status",
        Item::Error(_) => "an error",
        Item::Int(_) => "an integer",
        Item::Bulk(_) => "a string",
        Item::Nil => "nil",
        Item::Array(_) => "an array",
    }
}

/// An entry id from its text.
pub(crate) fn entry_id(b: &[u8]) -> Result<EntryId, ProtocolError> {
    std::str::from_utf8(b)
        .ok()
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| bad(format!("{:?} is not an entry id", String::from_utf8_lossy(b))))
}

/// One stream entry of a reply: its id and its fields (`None`: the entry
/// is pending but was deleted from the stream).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EntryAt {
    pub id: EntryId,
    pub fields: Option<FieldsAt>,
}

/// Where an entry's fields are: its field array in the reply (`bytes`, to
/// keep a copy), and its (name, value) pairs in the list filled by
/// [`read_reply_entries`] (`pairs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FieldsAt {
    pub bytes: (usize, usize),
    pub pairs: (usize, usize),
}

/// The entries of an `XREADGROUP`/`XREAD` reply on one or more streams:
/// nil when nothing came, else `[[stream, [[id, [k, v, ...]], ...]], ...]`.
/// The fields of all entries go to `pairs`, in one pass over the reply.
pub(crate) fn read_reply_entries<'a>(
    reply: &'a [u8],
    pairs: &mut Vec<(&'a [u8], &'a [u8])>,
) -> Result<Vec<EntryAt>, ProtocolError> {
    let mut c = Cursor::new(reply);
    let streams = c.array("the reply of XREADGROUP")?;
    let mut out = Vec::new();
    for _ in 0..streams {
        if c.array("a stream of the reply")? != 2 {
            return Err(bad("a stream of the reply does not have 2 parts"));
        }
        c.skip()?; // the stream name
        let n = c.array("the entry list")?;
        // (Bounded by the bytes there are: a count is not a promise.)
        let room = reply.len() / 16;
        out.reserve(n.min(room));
        pairs.reserve(n.saturating_mul(8).min(room));
        for _ in 0..n {
            match c.next_item()? {
                Item::Array(2) => {}
                Item::Nil => continue,
                other => return Err(bad(format!("a stream entry is {}, not a pair", describe(&other)))),
            }
            let id = entry_id(c.bulk("an entry id")?)?;
            let start = c.pos();
            let fields = match c.next_item()? {
                Item::Nil => None,
                Item::Array(n) if n % 2 == 0 => {
                    let first = pairs.len();
                    for _ in 0..n / 2 {
                        pairs.push((c.bulk("a field name")?, c.bulk("a field value")?));
                    }
                    Some(FieldsAt {
                        bytes: (start, c.pos()),
                        pairs: (first, pairs.len()),
                    })
                }
                Item::Array(_) => return Err(bad(format!("entry {id} has an odd number of field names and values"))),
                other => return Err(bad(format!("the fields of entry {id} are {}", describe(&other)))),
            };
            out.push(EntryAt { id, fields });
        }
    }
    Ok(out)
}

/// The (name, value) pairs of a field array (`*2n` then `2n` strings), as
/// given by [`read_reply_entries`] or saved by [`encode_fields`].
pub(crate) fn fields(array: &[u8]) -> Result<Fields<'_>, ProtocolError> {
    let mut c = Cursor::new(array);
    let n = c.array("the fields of an entry")?;
    Ok(Fields { cursor: c, left: n / 2 })
}

/// See [`fields`].
pub(crate) struct Fields<'a> {
    cursor: Cursor<'a>,
    left: usize,
}

impl<'a> Fields<'a> {
    /// How many pairs are left.
    pub(crate) fn len(&self) -> usize {
        self.left
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(&'a [u8], &'a [u8]), ProtocolError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let pair = self
            .cursor
            .bulk("a field name")
            .and_then(|k| Ok((k, self.cursor.bulk("a field value")?)));
        if pair.is_err() {
            self.left = 0;
        }
        Some(pair)
    }
}

/// Fields written as a RESP field array (what [`fields`] reads).
pub(crate) fn encode_fields<'a>(pairs: impl ExactSizeIterator<Item = (&'a [u8], &'a [u8])> + Clone) -> Vec<u8> {
    let size: usize = pairs.clone().map(|(k, v)| k.len() + v.len() + 32).sum();
    let mut out = Vec::with_capacity(size + 16);
    write_len(&mut out, b'*', pairs.len() * 2);
    for (k, v) in pairs {
        for b in [k, v] {
            write_len(&mut out, b'$', b.len());
            out.extend_from_slice(b);
            out.extend_from_slice(b"\r\n");
        }
    }
    out
}

fn write_len(out: &mut Vec<u8>, kind: u8, n: usize) {
    out.push(kind);
    out.extend_from_slice(crate::digits::Digits::default().format(n as u64));
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPLY: &[u8] = b"*1\r\n*2\r\n$6\r\nstream\r\n*3\r\n*2\r\n$3\r\n1-0\r\n*4\r\n$4\r\ntype\r\n$1\r\nt\r\n$10\r\nevent_data\r\n$4\r\na\r\nb\r\n*2\r\n$3\r\n2-5\r\n*-1\r\n*2\r\n$3\r\n3-0\r\n*0\r\n";

    #[test]
    fn a_reply_is_complete_only_when_all_of_it_came() {
        for cut in 0..REPLY.len() {
            let mut f = Frame::default();
            // Grow byte by byte up to the cut, then all at once.
            for i in 0..=cut {
                assert_eq!(f.scan(&REPLY[..i]).expect("valid so far"), None, "cut {cut} at {i}");
            }
            assert_eq!(f.scan(REPLY).expect("valid"), Some(REPLY.len()), "cut {cut}");
        }
        let mut f = Frame::default();
        let mut two = REPLY.to_vec();
        two.extend_from_slice(b"+OK\r\n");
        assert_eq!(f.scan(&two).expect("valid"), Some(REPLY.len()));
        for simple in [
            &b"+OK\r\n"[..],
            b"-ERR no\r\n",
            b":12\r\n",
            b"$-1\r\n",
            b"*-1\r\n",
            b"*0\r\n",
        ] {
            f.reset();
            assert_eq!(f.scan(simple).expect("valid"), Some(simple.len()));
        }
    }

    #[test]
    fn entries_and_their_fields() {
        let mut all = Vec::new();
        let entries = read_reply_entries(REPLY, &mut all).expect("parses");
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[0].id, EntryId { ms: 1, seq: 0 });
        assert_eq!(entries[1].fields, None, "trimmed");
        let at = entries[0].fields.expect("fields");
        let pairs = &all[at.pairs.0..at.pairs.1];
        assert_eq!(pairs, [(&b"type"[..], &b"t"[..]), (b"event_data", b"a\r\nb")]);
        let (from, to) = at.bytes;
        let again: Vec<(&[u8], &[u8])> = fields(&REPLY[from..to])
            .expect("array")
            .collect::<Result<_, _>>()
            .expect("pairs");
        assert_eq!(again, pairs);
        let saved = encode_fields(pairs.iter().copied());
        assert_eq!(saved, &REPLY[from..to], "saved fields are the same RESP");
        let at = entries[2].fields.expect("fields");
        assert_eq!(at.pairs.0, at.pairs.1);
        assert_eq!(fields(&REPLY[at.bytes.0..at.bytes.1]).expect("array").len(), 0);
        assert_eq!(read_reply_entries(b"*-1\r\n", &mut all).expect("nil"), vec![]);
        for (text, n) in [(&b"0"[..], 0), (b"-1", -1), (b"123456789012345678", 123456789012345678)] {
            assert_eq!(number(text), Ok(n));
        }
        for text in [&b""[..], b"-", b"1x", b"+1", b"1234567890123456789"] {
            assert!(number(text).is_err(), "{text:?}");
        }
    }

    #[test]
    fn malformed_replies_are_errors_not_panics() {
        for bad in [
            &b"?\r\n"[..],
            b"$x\r\n",
            b"$-2\r\n",
            b"*-5\r\n",
            b"$3\r\nabcde\r\n",
            b"+OK\n",
            b":1\rx\n",
        ] {
            let mut f = Frame::default();
            assert!(f.scan(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        // Whatever the bytes: an answer, never a panic.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let alphabet = b"*$:+-\r\n0123456789-1x";
        for round in 0..20_000 {
            let mut bytes = REPLY.to_vec();
            if round % 2 == 0 {
                for _ in 0..=(next() % 4) {
                    let i = (next() as usize) % bytes.len();
                    bytes[i] = alphabet[(next() as usize) % alphabet.len()];
                }
                bytes.truncate((next() as usize) % (bytes.len() + 1));
            } else {
                bytes = (0..(next() % 40))
                    .map(|_| alphabet[(next() as usize) % alphabet.len()])
                    .collect();
            }
            let mut f = Frame::default();
            if let Ok(Some(len)) = f.scan(&bytes) {
                let reply = &bytes[..len];
                let _ = read_reply_entries(reply, &mut Vec::new());
                let mut c = Cursor::new(reply);
                let _ = c.skip();
            }
            let _ = read_reply_entries(&bytes, &mut Vec::new());
            if let Ok(fields) = fields(&bytes) {
                let _ = fields.count();
            }
        }
        assert!(Frame::default().scan(b"\r\n").is_err());
        assert!(read_reply_entries(b"*1\r\n*2\r\n$1\r\ns\r\n*999999999999999\r\n", &mut Vec::new()).is_err());
        let mut deep = Vec::new();
        for _ in 0..=MAX_DEPTH {
            deep.extend_from_slice(b"*1\r\n");
        }
        assert!(Frame::default().scan(&deep).is_err());
        // Cut or odd shapes given to the cursor.
        for reply in [
            &b"*1\r\n*2\r\n$1\r\ns\r\n*1\r\n*2\r\n$3\r\nbad\r\n*0\r\n"[..],
            b"*1\r\n*2\r\n$1\r\ns\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*1\r\n$1\r\nk\r\n",
            b"*1\r\n*1\r\n$1\r\ns\r\n",
            b"*1\r\n*2\r\n$1\r\ns\r\n*1\r\n*2\r\n$3\r\n1-0\r\n",
            b":5\r\n",
        ] {
            assert!(
                read_reply_entries(reply, &mut Vec::new()).is_err(),
                "{:?}",
                String::from_utf8_lossy(reply)
            );
        }
        assert!(fields(b"*2\r\n$1\r\nk\r\n")
            .expect("array")
            .collect::<Result<Vec<_>, _>>()
            .is_err());
    }
}
