//! Finds the `bench:<ns>:` markers of published payloads in whatever bytes arrive, including
//! markers split across transport frames (NATS over WebSocket is a byte stream).

/// The marker's prefix.
pub const PREFIX: &[u8] = b"bench:";
/// Longest partial marker kept between frames: the prefix, 20 digits and the colon.
const CARRY: usize = 27;

/// The payload text of a publish intended at `ns`, padded to `len` bytes.
pub fn payload(ns: u64, len: usize) -> String {
    let mut s = format!("bench:{ns}:");
    while s.len() < len {
        s.push('x');
    }
    s
}

/// A streaming marker scanner.
#[derive(Default)]
pub struct Scanner {
    carry: Vec<u8>,
}

impl Scanner {
    /// Calls `found(ns)` for every complete marker in `bytes` (and in the carried tail).
    pub fn scan(&mut self, bytes: &[u8], mut found: impl FnMut(u64)) {
        let joined;
        let data: &[u8] = if self.carry.is_empty() {
            bytes
        } else {
            let mut v = std::mem::take(&mut self.carry);
            v.extend_from_slice(bytes);
            joined = v;
            &joined
        };
        let mut i = 0;
        let mut tail_from = data.len().saturating_sub(CARRY - 1);
        while let Some(pos) = find(&data[i..], PREFIX) {
            let start = i + pos;
            let digits_at = start + PREFIX.len();
            let mut j = digits_at;
            let mut ns: u64 = 0;
            while j < data.len() && data[j].is_ascii_digit() {
                ns = ns.wrapping_mul(10).wrapping_add(u64::from(data[j] - b'0'));
                j += 1;
            }
            if j == data.len() {
                // Incomplete: keep it for the next frame.
                tail_from = start;
                break;
            }
            if data[j] == b':' && j > digits_at {
                found(ns);
            }
            i = j;
            // The bytes after the last complete marker may still start the next one.
            tail_from = i.max(data.len().saturating_sub(CARRY - 1));
        }
        if tail_from < data.len() {
            // Keep a tail that may hold the start of a marker.
            let tail = &data[tail_from..];
            let keep = if find(tail, PREFIX).is_some() {
                tail
            } else {
                // Only a possible prefix of the prefix matters.
                let n = (1..PREFIX.len())
                    .rev()
                    .find(|n| tail.ends_with(&PREFIX[..*n]))
                    .unwrap_or(0);
                &tail[tail.len() - n..]
            };
            self.carry = keep.to_vec();
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(s: &mut Scanner, b: &[u8]) -> Vec<u64> {
        let mut v = Vec::new();
        s.scan(b, |n| v.push(n));
        v
    }

    #[test]
    fn finds_markers_whole_and_split() {
        let mut s = Scanner::default();
        assert_eq!(
            all(&mut s, b"MSG a 1 20\r\nbench:123:xx\r\nbench:4"),
            vec![123]
        );
        assert_eq!(all(&mut s, b"56:yy"), vec![456]);
        assert_eq!(all(&mut s, b"..ben"), Vec::<u64>::new());
        assert_eq!(all(&mut s, b"ch:7:"), vec![7]);
        assert_eq!(all(&mut s, b"bench:x"), Vec::<u64>::new());
        // A marker split right after a complete one in the same frame.
        assert_eq!(all(&mut s, b"bench:1:ben"), vec![1]);
        assert_eq!(all(&mut s, b"ch:2:"), vec![2]);
        assert_eq!(payload(5, 20).len(), 20);
    }
}
