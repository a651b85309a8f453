//! The client side of PyTorch's c10d TCPStore wire format, so that ranks launched by torchrun
//! meet in the store torchrun's agent already serves at MASTER_ADDR:MASTER_PORT (torchrun
//! says so with TORCHELASTIC_USE_AGENT_STORE=True; the port is then taken, and a store of our
//! own could not bind it).
//!
//! The format, as torch 2.15's client sends it (both its libuv and its classic server answer
//! the same), integers little-endian, strings and values as u64 length + bytes:
//! * on connect: VALIDATE (0) + magic u32 0x3C85F7CE, then PING (13) + nonce u32; the server
//!   echoes the nonce;
//! * SET (1) key value: no reply;
//! * GET (3) key: reply value (the key must exist: the client checks first);
//! * ADD (4) key i64: reply the new i64;
//! * CHECK (5) u64 count, keys: reply u8, 0 when every key is set.
//!
//! Only what the rendezvous needs (set, get, add, check) is spoken; WAIT would block the
//! connection server-side, so waiting is polling CHECK, as our own store's client does.

use std::io::{Read, Write};

const VALIDATE: u8 = 0;
const SET: u8 = 1;
const GET: u8 = 3;
const ADD: u8 = 4;
const CHECK: u8 = 5;
const PING: u8 = 13;
const MAGIC: u32 = 0x3C85_F7CE;

fn put_bytes(w: &mut impl Write, v: &[u8]) -> std::io::Result<()> {
    w.write_all(&(v.len() as u64).to_le_bytes())?;
    w.write_all(v)
}

fn get_u64(r: &mut impl Read) -> std::io::Result<u64> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

fn bad(what: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what)
}

/// The greeting; fails when the peer does not echo the nonce (not a c10d TCPStore).
pub(crate) fn handshake(r: &mut impl Read, w: &mut impl Write, nonce: u32) -> std::io::Result<()> {
    w.write_all(&[VALIDATE])?;
    w.write_all(&MAGIC.to_le_bytes())?;
    w.write_all(&[PING])?;
    w.write_all(&nonce.to_le_bytes())?;
    w.flush()?;
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    match u32::from_le_bytes(b) {
        n if n == nonce => Ok(()),
        n => Err(bad(format!(
            "the store answered the greeting with {n:#x}, not the nonce {nonce:#x}: is it a PyTorch TCPStore?"
        ))),
    }
}

pub(crate) fn set(w: &mut impl Write, key: &str, value: &[u8]) -> std::io::Result<()> {
    w.write_all(&[SET])?;
    put_bytes(w, key.as_bytes())?;
    put_bytes(w, value)?;
    w.flush()
}

/// Whether `key` is set (CHECK of one key).
pub(crate) fn check(r: &mut impl Read, w: &mut impl Write, key: &str) -> std::io::Result<bool> {
    w.write_all(&[CHECK])?;
    w.write_all(&1u64.to_le_bytes())?;
    put_bytes(w, key.as_bytes())?;
    w.flush()?;
    let mut b = [0u8];
    r.read_exact(&mut b)?;
    match b[0] {
        0 => Ok(true),
        1 => Ok(false),
        x => Err(bad(format!("check answered {x} (0 or 1 expected)"))),
    }
}

/// The value of a key known to be set.
pub(crate) fn get(r: &mut impl Read, w: &mut impl Write, key: &str) -> std::io::Result<Vec<u8>> {
    w.write_all(&[GET])?;
    put_bytes(w, key.as_bytes())?;
    w.flush()?;
    let n = get_u64(r)?;
    if n > 1 << 32 {
        return Err(bad(format!("get answered a {n}-byte value")));
    }
    let mut v = vec![0u8; n as usize];
    r.read_exact(&mut v)?;
    Ok(v)
}

pub(crate) fn add(
    r: &mut impl Read,
    w: &mut impl Write,
    key: &str,
    by: i64,
) -> std::io::Result<i64> {
    w.write_all(&[ADD])?;
    put_bytes(w, key.as_bytes())?;
    w.write_all(&by.to_le_bytes())?;
    w.flush()?;
    Ok(get_u64(r)? as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes each request puts on the wire, as torch 2.15's own client sent them through a
    /// logging proxy (set "/ka" = "xyz", check "/ka", get "/ka", add "/cnt" 5), and the replies
    /// parsed as its server sent them.
    #[test]
    fn requests_are_the_bytes_torch_sends_and_replies_parse() {
        let hex = |s: &str| -> Vec<u8> {
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
                .collect()
        };
        let mut w = Vec::new();
        handshake(&mut &hex("e5280000")[..], &mut w, 0x28e5).unwrap();
        assert_eq!(w, hex("00cef7853c0de5280000"));
        let mut w = Vec::new();
        set(&mut w, "/ka", b"xyz").unwrap();
        assert_eq!(w, hex("0103000000000000002f6b61030000000000000078797a"));
        let mut w = Vec::new();
        assert!(check(&mut &[0u8][..], &mut w, "/ka").unwrap());
        assert_eq!(w, hex("05010000000000000003000000000000002f6b61"));
        assert!(!check(&mut &[1u8][..], &mut Vec::new(), "/nope").unwrap());
        let mut w = Vec::new();
        let v = get(&mut &hex("030000000000000078797a")[..], &mut w, "/ka").unwrap();
        assert_eq!(
            (v.as_slice(), w),
            (&b"xyz"[..], hex("0303000000000000002f6b61"))
        );
        let mut w = Vec::new();
        assert_eq!(
            add(&mut &hex("0500000000000000")[..], &mut w, "/cnt", 5).unwrap(),
            5
        );
        assert_eq!(w, hex("0404000000000000002f636e740500000000000000"));
        // a peer that is not a TCPStore: a clear error, not a hang or a panic
        let e = handshake(&mut &[1u8, 2, 3, 4][..], &mut Vec::new(), 7).unwrap_err();
        assert!(e.to_string().contains("PyTorch TCPStore"), "{e}");
        assert!(check(&mut &[9u8][..], &mut Vec::new(), "k").is_err());
    }
}
