//! Where a chunked body ends (RFC 9112 §7.1), found without copying or decoding it: request
//! bodies to an upstream and response bodies to a client are relayed verbatim, chunk framing
//! and all, and the scanner only says when the last chunk and its trailers have passed.

/// Finds where a chunked body ends without copying it (RFC 9112 §7.1): chunk sizes in hex,
/// extensions skipped, data counted, then the trailer section up to an empty line.
/// A chunked body that does not follow the chunk grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

#[derive(Debug, Default)]
pub struct ChunkScanner {
    state: Chunk,
    size: u64,
    /// Bytes on the current trailer line, to tell the empty line that ends the body.
    line: usize,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    #[default]
    Size,
    /// Past the size: an extension or whitespace, up to LF.
    SizeRest,
    Data,
    DataCr,
    DataLf,
    Trailer,
    Done,
}

impl ChunkScanner {
    /// `Ok(Some(n))` when the body ends after `n` bytes of `bytes`; `Ok(None)` when all of them
    /// belong to it and more must come; `Err` on a malformed body.
    pub fn scan(&mut self, bytes: &[u8]) -> Result<Option<usize>, Malformed> {
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            match self.state {
                Chunk::Size => match (b as char).to_digit(16) {
                    Some(d) => {
                        self.size = self
                            .size
                            .checked_mul(16)
                            .and_then(|s| s.checked_add(u64::from(d)))
                            .ok_or(Malformed)?;
                        self.line += 1;
                    }
                    None if self.line == 0 => return Err(Malformed),
                    None => {
                        self.state = Chunk::SizeRest;
                        continue;
                    }
                },
                Chunk::SizeRest => match b {
                    b'\n' => {
                        self.line = 0;
                        self.state = if self.size == 0 {
                            Chunk::Trailer
                        } else {
                            Chunk::Data
                        };
                    }
                    b'\r' | b';' | b' ' | b'\t' | b'=' | b'"' => {}
                    _ if b.is_ascii_graphic() => {}
                    _ => return Err(Malformed),
                },
                Chunk::Data => {
                    let n = (self.size).min((bytes.len() - i) as u64) as usize;
                    self.size -= n as u64;
                    i += n;
                    if self.size == 0 {
                        self.state = Chunk::DataCr;
                    }
                    continue;
                }
                Chunk::DataCr if b == b'\r' => self.state = Chunk::DataLf,
                Chunk::DataCr | Chunk::DataLf if b == b'\n' => self.state = Chunk::Size,
                Chunk::DataCr | Chunk::DataLf => return Err(Malformed),
                Chunk::Trailer => match b {
                    b'\n' if self.line == 0 => {
                        self.state = Chunk::Done;
                        return Ok(Some(i + 1));
                    }
                    b'\n' => self.line = 0,
                    b'\r' if self.line == 0 => {}
                    _ => self.line += 1,
                },
                Chunk::Done => return Ok(Some(i)),
            }
            i += 1;
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `body` to a scanner in pieces of every size, so every state meets a boundary.
    fn scan_in_pieces(body: &[u8]) -> Result<Option<usize>, Malformed> {
        let mut result = Ok(None);
        for piece in 1..=body.len() {
            let mut s = ChunkScanner::default();
            let mut at = 0;
            result = Ok(None);
            for part in body.chunks(piece) {
                match s.scan(part)? {
                    Some(n) => {
                        result = Ok(Some(at + n));
                        break;
                    }
                    None => at += part.len(),
                }
            }
        }
        result
    }

    #[test]
    fn chunked_bodies_end_where_the_last_chunk_and_trailers_end() {
        let body = b"5\r\nhello\r\nA;ext=\"v\"\r\n0123456789\r\n0\r\n\r\nNEXT";
        assert_eq!(scan_in_pieces(body), Ok(Some(body.len() - 4)));
        let trailers = b"3\r\nabc\r\n0\r\nX-Sum: 1\r\nY: 2\r\n\r\n";
        assert_eq!(scan_in_pieces(trailers), Ok(Some(trailers.len())));
        let bare_lf = b"3\nabc\n0\n\n";
        assert_eq!(scan_in_pieces(bare_lf), Ok(Some(bare_lf.len())));
        assert_eq!(scan_in_pieces(b"5\r\nhel"), Ok(None));
        for bad in [
            &b"x\r\n"[..],
            b"5\r\nhelloX\r\n",
            b"\r\n",
            b"fffffffffffffffff\r\n",
        ] {
            assert_eq!(
                scan_in_pieces(bad),
                Err(Malformed),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
