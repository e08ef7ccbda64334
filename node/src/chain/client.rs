//! A minimal HTTP/1.1 client for the ledger API (`Connection: close`, one request per
//! connection): blocking for the CLI, async for the gossip forwarder. Enough for our own
//! endpoints; not a general client.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Header marking a transaction batch forwarded by another validator (never re-forwarded).
pub const FORWARDED_HEADER: &str = "x-groundtruth-forwarded";

/// Largest response read, bytes.
const MAX_RESPONSE: u64 = 64 << 20;

/// `http://host:port/…` or `host:port` → `host:port`.
pub fn authority(url: &str) -> &str {
    let rest = url
        .strip_prefix("http://")
        .unwrap_or(url)
        .trim_end_matches('/');
    rest.split('/').next().unwrap_or(rest)
}

fn request_bytes(
    host: &str,
    method: &str,
    path: &str,
    body: &[u8],
    headers: &[(&str, &str)],
) -> Vec<u8> {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !body.is_empty() {
        req.push_str("Content-Type: application/octet-stream\r\n");
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut out = req.into_bytes();
    out.extend_from_slice(body);
    out
}

/// Splits a raw response into status and body (handles `Transfer-Encoding: chunked`).
pub fn parse_response(raw: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of headers"))?;
    let head = std::str::from_utf8(raw.get(..split).unwrap_or_default())
        .map_err(|_| bad("headers are not UTF-8"))?;
    let body = raw.get(split + 4..).unwrap_or_default();
    let status = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status line"))?;
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    if !chunked {
        return Ok((status, body.to_vec()));
    }
    let mut out = Vec::new();
    let mut rest = body;
    loop {
        let line_end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| bad("truncated chunk"))?;
        let size_text = std::str::from_utf8(rest.get(..line_end).unwrap_or_default())
            .map_err(|_| bad("bad chunk size"))?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| bad("bad chunk size"))?;
        if size == 0 {
            return Ok((status, out));
        }
        let start = line_end + 2;
        let chunk = rest
            .get(start..start + size)
            .ok_or_else(|| bad("truncated chunk"))?;
        out.extend_from_slice(chunk);
        rest = rest.get(start + size + 2..).unwrap_or_default();
    }
}

/// Sends one request and returns the status and body (blocking).
pub fn request(
    url: &str,
    method: &str,
    path: &str,
    body: &[u8],
    headers: &[(&str, &str)],
    timeout: Duration,
) -> std::io::Result<(u16, Vec<u8>)> {
    let host = authority(url);
    let addr = std::net::ToSocketAddrs::to_socket_addrs(host)?
        .next()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, host.to_string()))?;
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    s.write_all(&request_bytes(host, method, path, body, headers))?;
    let mut raw = Vec::new();
    s.take(MAX_RESPONSE).read_to_end(&mut raw)?;
    parse_response(&raw)
}

/// Sends one request and returns the status and body (async).
pub async fn request_async(
    url: &str,
    method: &str,
    path: &str,
    body: &[u8],
    headers: &[(&str, &str)],
    timeout: Duration,
) -> std::io::Result<(u16, Vec<u8>)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = authority(url).to_string();
    let req = request_bytes(&host, method, path, body, headers);
    let fut = async move {
        let mut s = tokio::net::TcpStream::connect(&host).await?;
        s.write_all(&req).await?;
        let mut raw = Vec::new();
        s.take(MAX_RESPONSE).read_to_end(&mut raw).await?;
        parse_response(&raw)
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "request timed out"))?
}

/// Encodes transactions for `POST /txs`: `(u32 big-endian length ‖ bytes)*`.
pub fn encode_batch<T: AsRef<[u8]>>(txs: &[T]) -> Vec<u8> {
    let mut out = Vec::with_capacity(txs.iter().map(|t| t.as_ref().len() + 4).sum());
    for t in txs {
        let t = t.as_ref();
        out.extend_from_slice(&u32::try_from(t.len()).unwrap_or(u32::MAX).to_be_bytes());
        out.extend_from_slice(t);
    }
    out
}

/// Decodes a `POST /txs` body; `None` if it is not a well-formed batch.
pub fn decode_batch(mut body: &[u8]) -> Option<Vec<&[u8]>> {
    let mut out = Vec::new();
    while !body.is_empty() {
        let len = usize::try_from(u32::from_be_bytes(body.get(..4)?.try_into().ok()?)).ok()?;
        out.push(body.get(4..4 + len)?);
        body = body.get(4 + len..)?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_round_trip_and_truncation() {
        let b = encode_batch(&[b"ab".to_vec(), Vec::new(), b"xyz".to_vec()]);
        assert_eq!(
            decode_batch(&b),
            Some(vec![&b"ab"[..], &b""[..], &b"xyz"[..]])
        );
        assert_eq!(decode_batch(&b[..b.len() - 1]), None);
        assert_eq!(decode_batch(&[0, 0]), None);
    }

    #[test]
    fn responses_plain_and_chunked() {
        let plain = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        assert_eq!(parse_response(plain).ok(), Some((200, b"ok".to_vec())));
        let chunked =
            b"HTTP/1.1 400 Bad\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked).ok(), Some((400, b"abcde".to_vec())));
        assert!(parse_response(b"garbage").is_err());
        assert_eq!(authority("http://127.0.0.1:9/x"), "127.0.0.1:9");
    }
}
