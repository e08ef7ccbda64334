//! Multi-process tests: four `kv-node` validators (this crate's demo binary) on loopback,
//! each in its own temporary home directory.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Voting powers: any single validator may fail (each holds < 1/3).
const POWERS: [u64; 4] = [30, 30, 20, 20];

/// Per node: height -> state root, as printed by the node.
type Commits = Arc<Mutex<Vec<BTreeMap<u64, String>>>>;

struct Net {
    dir: tempfile::TempDir,
    extra_args: Vec<String>,
    ports: Vec<u16>,
    children: Vec<Option<Child>>,
    commits: Commits,
    /// Conflicting roots printed by one node for one height (must stay empty).
    conflicts: Arc<Mutex<Vec<String>>>,
}

impl Drop for Net {
    fn drop(&mut self) {
        for c in self.children.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn kv_node_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_kv-node"))
}

fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("addr").port())
        .collect()
}

impl Net {
    fn start(extra_args: &[&str]) -> Self {
        let mut net = Net {
            dir: tempfile::tempdir().expect("tempdir"),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            ports: free_ports(POWERS.len()),
            children: (0..POWERS.len()).map(|_| None).collect(),
            commits: Arc::new(Mutex::new(vec![BTreeMap::new(); POWERS.len()])),
            conflicts: Arc::default(),
        };
        for i in 0..POWERS.len() {
            net.spawn(i);
        }
        net
    }

    fn spawn(&mut self, i: usize) {
        let home = self.dir.path().join(format!("node{i}"));
        std::fs::create_dir_all(&home).expect("home");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("node{i}.log")))
            .expect("log file");
        let ports: Vec<String> = self.ports.iter().map(u16::to_string).collect();
        let powers: Vec<String> = POWERS.iter().map(u64::to_string).collect();
        let mut child = Command::new(kv_node_binary())
            .args(["--home", home.to_str().expect("utf-8 path")])
            .args(["--index", &i.to_string()])
            .args(["--ports", &ports.join(",")])
            .args(["--powers", &powers.join(",")])
            .args(["--tx-interval-ms", "50"])
            .args(&self.extra_args)
            .env("RUST_LOG", "warn,consensus=info")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn kv-node");
        let stdout = child.stdout.take().expect("stdout");
        let commits = self.commits.clone();
        let conflicts = self.conflicts.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let mut f = line.split_whitespace();
                if f.next() != Some("COMMIT") {
                    continue;
                }
                let (Some(h), Some(root)) = (f.next().and_then(|h| h.parse().ok()), f.next())
                else {
                    continue;
                };
                let mut all = commits.lock().expect("lock");
                if let Some(old) = all[i].insert(h, root.to_string()) {
                    if old != root {
                        conflicts
                            .lock()
                            .expect("lock")
                            .push(format!("node {i} height {h}: {old} then {root}"));
                    }
                }
            }
        });
        self.children[i] = Some(child);
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.children[i].take() {
            c.kill().expect("kill -9");
            c.wait().expect("reap");
        }
    }

    fn height(&self, i: usize) -> u64 {
        self.commits.lock().expect("lock")[i]
            .keys()
            .next_back()
            .copied()
            .unwrap_or(0)
    }

    fn root(&self, i: usize, h: u64) -> Option<String> {
        self.commits.lock().expect("lock")[i].get(&h).cloned()
    }

    /// Waits until `cond` holds, or fails with the nodes' heights and log tails.
    fn wait_for(&self, what: &str, timeout: Duration, cond: impl Fn(&Net) -> bool) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if cond(self) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let heights: Vec<u64> = (0..POWERS.len()).map(|i| self.height(i)).collect();
        let mut logs = String::new();
        for i in 0..POWERS.len() {
            let log = std::fs::read_to_string(self.dir.path().join(format!("node{i}.log")))
                .unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            logs += &format!("\n--- node{i} ---\n");
            for l in tail.into_iter().rev() {
                logs += l;
                logs.push('\n');
            }
        }
        panic!("timed out waiting for {what}; heights {heights:?}{logs}");
    }

    /// Every height committed by more than one node has a single root.
    fn assert_agreement(&self) {
        assert!(
            self.conflicts.lock().expect("lock").is_empty(),
            "a node changed its mind: {:?}",
            self.conflicts.lock().expect("lock")
        );
        let all = self.commits.lock().expect("lock");
        let mut by_height: BTreeMap<u64, &String> = BTreeMap::new();
        for (i, node) in all.iter().enumerate() {
            for (h, root) in node {
                if let Some(other) = by_height.insert(*h, root) {
                    assert_eq!(other, root, "node {i} disagrees at height {h}");
                }
            }
        }
    }
}

/// Four validators decide the same blocks; one is killed (`kill -9`) and the other three keep
/// finalizing; it restarts, replays its block store and catches up through sync to the same
/// state root.
#[test]
fn four_validators_agree_survive_a_crash_and_catch_up() {
    let mut net = Net::start(&[]);
    let all = 0..POWERS.len();

    net.wait_for("4 nodes at height 5", Duration::from_secs(40), |n| {
        all.clone().all(|i| n.height(i) >= 5)
    });
    net.assert_agreement();
    for h in 1..=5 {
        let root = net.root(0, h).expect("root");
        for i in 1..POWERS.len() {
            assert_eq!(net.root(i, h).as_ref(), Some(&root), "node {i} height {h}");
        }
    }

    // Crash a validator with 20 of 100 voting power: 80 > 2/3 keeps deciding.
    let victim = 3;
    net.kill(victim);
    let live = [0, 1, 2];
    let at_kill = live.iter().map(|&i| net.height(i)).max().unwrap_or(0);
    net.wait_for(
        "the others to finalize 3 more heights",
        Duration::from_secs(30),
        |n| live.iter().all(|&i| n.height(i) >= at_kill + 3),
    );
    net.assert_agreement();

    // Restart: the node replays its store, then syncs the heights it missed.
    let target = live.iter().map(|&i| net.height(i)).max().unwrap_or(0);
    net.spawn(victim);
    net.wait_for(
        "the restarted node to catch up",
        Duration::from_secs(30),
        |n| n.height(victim) >= target,
    );
    net.assert_agreement();
    assert_eq!(net.root(victim, target), net.root(0, target));

    // And it takes part again: all four keep deciding the same blocks.
    let caught_up = net.height(victim);
    net.wait_for(
        "all four to decide 3 more heights",
        Duration::from_secs(30),
        |n| all.clone().all(|i| n.height(i) >= caught_up + 3),
    );
    net.assert_agreement();
}

/// Voting powers come from the application per height: once validator 3's power drops to 0
/// (an epoch boundary at height 6), validators 2 and 3 together can fail, since 0 and 1 hold
/// 60 of the remaining 80. Under the genesis powers they would hold 60 of 100 and halt.
#[test]
fn validator_set_change_takes_effect_at_the_boundary() {
    let mut net = Net::start(&["--powers-from", "6:30,30,20,0"]);
    net.wait_for("4 nodes past the boundary", Duration::from_secs(40), |n| {
        (0..POWERS.len()).all(|i| n.height(i) >= 7)
    });
    net.kill(3);
    net.kill(2);
    let live = [0, 1];
    let at_kill = live.iter().map(|&i| net.height(i)).max().unwrap_or(0);
    net.wait_for(
        "validators 0 and 1 to keep deciding",
        Duration::from_secs(30),
        |n| live.iter().all(|&i| n.height(i) >= at_kill + 3),
    );
    net.assert_agreement();
}
