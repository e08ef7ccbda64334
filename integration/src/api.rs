//! The harness's raw HTTP helper: a node's API and `/metrics` over plain HTTP/1.1
//! (`Connection: close`). The product's one typed client is `groundtruth_api::client::ApiClient`
//! (the CLI, the devnet and the gossip forwarder use it); the harness keeps this raw one because
//! its hostile-request tests send what a typed client never would (oversized bodies written
//! after the server has already answered, malformed batches) and read any status back.

use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A node's HTTP endpoint (ledger API, `/metrics`, `/healthz`). Cheap to copy into threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Api {
    /// Its address.
    pub addr: SocketAddr,
}

/// A response: status and body.
#[derive(Debug, Clone)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// Body (de-chunked).
    pub body: Vec<u8>,
}

impl Response {
    /// The body as JSON.
    pub fn json(&self) -> Result<Value> {
        serde_json::from_slice(&self.body).with_context(|| {
            format!(
                "status {}, body is not JSON: {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The body as text, for messages.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Api {
    /// `http://host:port`, as the CLI's `--node` takes it.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// One request. A server that answers before reading the whole body (e.g. `413` on the
    /// declared length) and closes is fine: its answer is returned.
    pub fn request(&self, method: &str, path: &str, body: &[u8]) -> Result<Response> {
        let addr = self.addr;
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes())?;
        // An early answer makes the rest of the body fail to send; read the answer anyway.
        let _ = s.write_all(body);
        let mut raw = Vec::new();
        if let Err(e) = s.read_to_end(&mut raw) {
            if raw.is_empty() {
                return Err(e).with_context(|| format!("{method} {path} on {addr}"));
            }
        }
        parse_response(&raw).with_context(|| format!("{method} {path} on {addr}"))
    }

    /// `GET path` as JSON (any status).
    pub fn get_json(&self, path: &str) -> Result<(u16, Value)> {
        let r = self.request("GET", path, &[])?;
        Ok((r.status, r.json()?))
    }

    /// `POST path` with raw bytes.
    pub fn post(&self, path: &str, body: &[u8]) -> Result<Response> {
        self.request("POST", path, body)
    }

    /// `GET /metrics`, parsed.
    pub fn metrics(&self) -> Result<Metrics> {
        let r = self.request("GET", "/metrics", &[])?;
        if r.status != 200 {
            bail!("GET /metrics on {}: status {}", self.addr, r.status);
        }
        Ok(Metrics::parse(&r.text()))
    }

    /// `GET path` as bytes; fails unless the status is 200.
    pub fn get_bytes(&self, path: &str) -> Result<Vec<u8>> {
        let r = self.request("GET", path, &[])?;
        if r.status != 200 {
            bail!(
                "GET {path} on {}: status {} {}",
                self.addr,
                r.status,
                r.text()
            );
        }
        Ok(r.body)
    }

    /// `GET /v1/epochs/{n}`: what the ledger decided about epoch `n`.
    pub fn epoch(&self, n: u64) -> Result<Value> {
        let (code, v) = self.get_json(&format!("/v1/epochs/{n}"))?;
        if code != 200 {
            bail!("GET /v1/epochs/{n} on {}: status {code} {v}", self.addr);
        }
        Ok(v)
    }

    /// `GET /v1/epochs`: `{current, committed}`.
    pub fn epochs(&self) -> Result<Value> {
        let (code, v) = self.get_json("/v1/epochs")?;
        if code != 200 {
            bail!("GET /v1/epochs on {}: status {code} {v}", self.addr);
        }
        Ok(v)
    }

    /// `GET /status` (ledger nodes).
    pub fn status(&self) -> Result<Value> {
        Ok(self.get_json("/status")?.1)
    }

    /// Committed height, 0 when unreachable.
    pub fn height(&self) -> u64 {
        self.status()
            .ok()
            .and_then(|s| s["height"].as_u64())
            .unwrap_or(0)
    }

    /// How many device-equivocation slashes of `provider` (account hex) the ledger records
    /// (`GET /state/validators`).
    pub fn device_equivocation_slashes(&self, provider: &str) -> Result<usize> {
        let (code, v) = self.get_json("/state/validators")?;
        if code != 200 {
            bail!("GET /state/validators on {}: status {code} {v}", self.addr);
        }
        Ok(device_equivocation_slashes(&v, provider))
    }
}

/// The device-equivocation slashes of `provider` in a `GET /state/validators` answer.
fn device_equivocation_slashes(validators: &Value, provider: &str) -> usize {
    validators["slashes"].as_array().map_or(0, |s| {
        s.iter()
            .filter(|r| {
                r["reason"] == "device_equivocation" && r["offender"]["provider"] == provider
            })
            .count()
    })
}

fn parse_response(raw: &[u8]) -> Result<Response> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no end of headers")?;
    let head = std::str::from_utf8(&raw[..split])?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("no status")?;
    let rest = &raw[split + 4..];
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(rest)?
    } else {
        rest.to_vec()
    };
    Ok(Response { status, body })
}

fn dechunk(mut raw: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = raw
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("truncated chunk size")?;
        let size_text = std::str::from_utf8(&raw[..eol])?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)?;
        raw = &raw[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        let chunk = raw.get(..size).context("truncated chunk")?;
        out.extend_from_slice(chunk);
        raw = raw.get(size + 2..).context("truncated chunk end")?;
    }
}

/// A Prometheus text scrape: `name{labels}` → value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metrics(pub BTreeMap<String, f64>);

impl Metrics {
    /// Parses the Prometheus text format (comments skipped).
    pub fn parse(text: &str) -> Self {
        let mut out = BTreeMap::new();
        for line in text.lines() {
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            if let Some((name, value)) = line.rsplit_once(' ') {
                if let Ok(v) = value.parse::<f64>() {
                    out.insert(name.to_string(), v);
                }
            }
        }
        Self(out)
    }

    /// A series' value (`name` or `name{labels}`), 0 when absent.
    pub fn get(&self, series: &str) -> f64 {
        self.0.get(series).copied().unwrap_or(0.0)
    }

    /// Ingest outcome counts by label: `accepted` (all kinds) and each rejection reason; zero
    /// counts left out.
    pub fn outcomes(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for (k, v) in &self.0 {
            let label = if k.starts_with("groundtruth_ingest_accepted_total{") {
                "accepted".to_string()
            } else if let Some(rest) = k.strip_prefix("groundtruth_ingest_rejected_total{reason=\"")
            {
                rest.trim_end_matches("\"}").to_string()
            } else {
                continue;
            };
            if *v > 0.0 {
                *out.entry(label).or_insert(0) += *v as u64;
            }
        }
        out
    }

    /// One outcome's count (see [`Metrics::outcomes`]).
    pub fn outcome(&self, label: &str) -> u64 {
        self.outcomes().get(label).copied().unwrap_or(0)
    }
}
