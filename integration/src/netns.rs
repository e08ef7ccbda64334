//! Network namespaces for partition tests (Linux, root, iproute2).
//!
//! [`Netns::create`] puts each validator in its own namespace with one veth pair whose other
//! end is enslaved to a bridge in the test's namespace: validator `i` has its own address
//! `10.a.b.(i+2)/24`, the bridge (and so the test process) has `10.a.b.1`. Taking the bridge
//! end of validator `i`'s pair down ([`Netns::isolate`]) cuts it off from everyone, the test
//! included; bringing it up ([`Netns::heal`]) reconnects it. Names carry the test process id
//! and a counter, so parallel tests and processes do not collide; everything is removed on
//! drop, panics included (the namespaces' processes must be gone first: [`crate::TestNet`]
//! drops its validators before its namespaces).

use anyhow::{bail, Context, Result};
use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Runs `ip args`; its stdout, or an error with its stderr.
fn ip(args: &[&str]) -> Result<String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .with_context(|| format!("running `ip {}` (is iproute2 installed?)", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Effective user id, from `/proc/self/status`.
fn euid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// One validator's namespace and the bridge end of its veth pair.
#[derive(Debug)]
struct Member {
    ns: String,
    host_if: String,
}

/// A bridge and one network namespace per validator; removed on drop.
#[derive(Debug)]
pub struct Netns {
    bridge: String,
    net: [u8; 2],
    members: Vec<Member>,
}

impl Netns {
    /// Why namespaces cannot be used here (not root, no `ip`, `ip netns add` refused), or
    /// `None` when they can.
    pub fn unavailable() -> Option<String> {
        match euid() {
            Some(0) => {}
            Some(u) => return Some(format!("network namespaces need root (running as uid {u})")),
            None => return Some("cannot read the effective uid from /proc".into()),
        }
        let probe = format!("gt-probe-{}", std::process::id());
        match ip(&["netns", "add", &probe]) {
            Ok(_) => {
                let _ = ip(&["netns", "del", &probe]);
                None
            }
            Err(e) => Some(format!("{e:#}")),
        }
    }

    /// A bridge and `n` namespaces (`n` ≤ 200), each with its veth pair up and its loopback up.
    pub fn create(n: usize) -> Result<Self> {
        if n == 0 || n > 200 {
            bail!("{n} namespaces: between 1 and 200");
        }
        let id = format!(
            "{:05x}{:x}",
            std::process::id() & 0xf_ffff,
            NEXT.fetch_add(1, Ordering::Relaxed) & 0xf
        );
        let net = Self::free_subnet(&id)?;
        let mut me = Self {
            bridge: format!("gtb{id}"),
            net,
            members: Vec::new(),
        };
        ip(&["link", "add", &me.bridge, "type", "bridge"])?;
        let gw = format!("10.{}.{}.1/24", net[0], net[1]);
        ip(&["addr", "add", &gw, "dev", &me.bridge])?;
        ip(&["link", "set", &me.bridge, "up"])?;
        for i in 0..n {
            let member = Member {
                ns: format!("gt-{id}-v{i}"),
                host_if: format!("gth{id}{i:x}"),
            };
            let ns_if = format!("gtn{id}{i:x}");
            // Recorded before it exists, so that a failure half-way is cleaned up too.
            ip(&["netns", "add", &member.ns])?;
            me.members.push(member);
            let m = &me.members[i];
            ip(&[
                "link", "add", &m.host_if, "type", "veth", "peer", "name", &ns_if,
            ])?;
            ip(&["link", "set", &ns_if, "netns", &m.ns])?;
            ip(&["link", "set", &m.host_if, "master", &me.bridge])?;
            ip(&["link", "set", &m.host_if, "up"])?;
            let addr = format!("{}/24", me.addr(i));
            ip(&["-n", &m.ns, "addr", "add", &addr, "dev", &ns_if])?;
            ip(&["-n", &m.ns, "link", "set", &ns_if, "up"])?;
            ip(&["-n", &m.ns, "link", "set", "lo", "up"])?;
        }
        Ok(me)
    }

    /// A `10.a.b.0/24` no interface here uses, derived from `id`.
    fn free_subnet(id: &str) -> Result<[u8; 2]> {
        let used = ip(&["-o", "-4", "addr", "show"])?;
        let h = blake3::hash(id.as_bytes());
        let h = h.as_bytes();
        for k in 0..64u8 {
            let net = [100 + (h[0].wrapping_add(k) % 100), h[1].wrapping_add(k)];
            if !used.contains(&format!(" 10.{}.{}.", net[0], net[1])) {
                return Ok(net);
            }
        }
        bail!("no free 10.x.y.0/24 subnet found")
    }

    /// Number of namespaces.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Validator `i`'s address.
    pub fn addr(&self, i: usize) -> IpAddr {
        let host = u8::try_from(i + 2).unwrap_or(254);
        IpAddr::V4(Ipv4Addr::new(10, self.net[0], self.net[1], host))
    }

    /// The command prefix that runs a program in validator `i`'s namespace.
    pub fn exec_prefix(&self, i: usize) -> Vec<String> {
        vec![
            "ip".into(),
            "netns".into(),
            "exec".into(),
            self.members[i].ns.clone(),
        ]
    }

    /// Cuts validator `i` off from every other validator and from the test.
    pub fn isolate(&self, i: usize) -> Result<()> {
        ip(&["link", "set", &self.members[i].host_if, "down"]).map(drop)
    }

    /// Reconnects validator `i`.
    pub fn heal(&self, i: usize) -> Result<()> {
        ip(&["link", "set", &self.members[i].host_if, "up"]).map(drop)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for m in &self.members {
            // Deleting one end of a veth pair deletes both, wherever the other end is.
            let _ = ip(&["link", "del", &m.host_if]);
            if let Err(e) = ip(&["netns", "del", &m.ns]) {
                eprintln!("cleanup: {e:#}");
            }
        }
        if let Err(e) = ip(&["link", "del", &self.bridge]) {
            eprintln!("cleanup: {e:#}");
        }
    }
}
