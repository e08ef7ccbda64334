//! A minimal energy meter: loads (or creates) its key, then publishes a few signed readings to
//! an MQTT broker through the durable offline queue.
//!
//! ```text
//! cargo run -p groundtruth-device-sdk --example meter -- <host> <port> [count] [state-dir]
//! ```
//!
//! `state-dir` (default `./meter-state`) keeps the key file (`device.key`, mode 0600) and the
//! offline queue, so running it again continues the sequence numbers. With no broker running,
//! the readings wait in the queue and go out on the next run that reaches one.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use groundtruth_device_sdk::{keys, EnergyReading, Publisher, PublisherConfig, ReadingBody};

fn usage() -> ! {
    eprintln!("usage: meter <host> <port> [count] [state-dir]");
    std::process::exit(2)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(host), Some(port)) = (args.first(), args.get(1)) else {
        usage()
    };
    let port: u16 = port.parse().unwrap_or_else(|_| usage());
    let count: u64 = args
        .get(2)
        .map_or(Ok(5), |c| c.parse())
        .unwrap_or_else(|_| usage());
    let state = PathBuf::from(args.get(3).map_or("meter-state", String::as_str));
    std::fs::create_dir_all(&state)?;

    // 1. The device key: generated once, kept owner-only, never logged.
    let key = keys::load_or_generate(&state.join("device.key"))?;
    let device = key.device_id();
    println!("device id {device}");

    // 2. The publisher: a durable queue in state/queue and a background MQTT task.
    // Client id and username are the device id; the password is a login token signed with the
    // device key at each connection (PROTOCOL.md §5.1).
    let config = PublisherConfig::new(host.as_str(), port, state.join("queue"));
    let publisher = Publisher::start(key, config)?;

    // 3. Readings: one 5-minute interval each, with a cumulative register.
    let now_s = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let first_seq = publisher.status().next_seq;
    for i in 0..count {
        let seq = first_seq + i;
        let interval_start_s = (now_s - now_s % 300).saturating_sub(300 * (count - i));
        let body = ReadingBody::Energy(EnergyReading {
            interval_start_s,
            interval_len_s: 300,
            energy_wh: 400 + i % 7,
            register_wh: 1_000_000 + 400 * seq,
        });
        let signed = publisher.publish((interval_start_s + 300) * 1000, body)?;
        println!(
            "queued seq {} ({} bytes)",
            signed.reading.seq,
            signed.frame_len()
        );
    }

    // 4. Wait (a while) for the broker's acknowledgements; whatever is left stays queued.
    if publisher.flush(Duration::from_secs(10)).await {
        println!("all readings acknowledged by the broker");
    } else {
        let s = publisher.status();
        println!(
            "{} readings still queued; they go out on the next run",
            s.pending()
        );
    }
    publisher.shutdown().await;
    Ok(())
}
