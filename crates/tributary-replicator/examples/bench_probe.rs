//! Measurement helper for `e2e/bench/replicator.sh` (same probe for every system under test):
//!
//! - `ends`: watches the destination topic's end offsets; prints when the first record
//!   landed and when `--target` records are there, with the CPU seconds the process `--pid`
//!   (the copier) and, with `--broker-pid`, the destination broker had used at both moments
//!   (from /proc), so the script measures the copy window only.
//! - `latency`: reads the destination topic from its current end and prints p50/p99 of
//!   (time read − record timestamp) over `--count` records. Replicators keep the source
//!   timestamp, so this is end-to-end replication latency.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// utime + stime of a process (all threads), in seconds.
fn cpu_seconds(pid: &str, clk_tck: f64) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return -1.0;
    };
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = stat.rsplit(')').next().unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state); utime is field 14, stime 15.
    let ticks = |i: usize| {
        fields
            .get(i - 3)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(14) + ticks(15)) / clk_tck
}

fn consumer(bootstrap: &str) -> Result<BaseConsumer, Box<dyn std::error::Error>> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("bench-probe-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "10")
        .create()?)
}

fn partitions(c: &BaseConsumer, topic: &str) -> Result<Vec<i32>, Box<dyn std::error::Error>> {
    let md = c.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    Ok(md
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = args.first().cloned().unwrap_or_default();
    let bootstrap = arg(&args, "--bootstrap").ok_or("--bootstrap")?;
    let topic = arg(&args, "--topic").ok_or("--topic")?;
    let timeout = Duration::from_secs(
        arg(&args, "--timeout")
            .and_then(|t| t.parse().ok())
            .unwrap_or(600),
    );
    let started = Instant::now();
    match mode.as_str() {
        "ends" => {
            let target: i64 = arg(&args, "--target").ok_or("--target")?.parse()?;
            let pid = arg(&args, "--pid").ok_or("--pid")?;
            let clk: f64 = arg(&args, "--clk-tck")
                .and_then(|t| t.parse().ok())
                .unwrap_or(100.0);
            let broker = arg(&args, "--broker-pid");
            let broker_cpu = || broker.as_deref().map_or(-1.0, |b| cpu_seconds(b, clk));
            let c = consumer(&bootstrap)?;
            let mut first: Option<(i64, f64, f64)> = None;
            while started.elapsed() < timeout {
                let total: i64 = match partitions(&c, &topic) {
                    Ok(ps) if !ps.is_empty() => ps
                        .iter()
                        .map(|p| {
                            c.fetch_watermarks(&topic, *p, Duration::from_secs(5))
                                .map_or(0, |(_, high)| high)
                        })
                        .sum(),
                    _ => 0,
                };
                if total > 0 && first.is_none() {
                    first = Some((now_ms(), cpu_seconds(&pid, clk), broker_cpu()));
                }
                if total >= target {
                    let (first_ms, first_cpu, first_broker) = first.unwrap_or((now_ms(), 0.0, 0.0));
                    println!(
                        "first_ms={first_ms} done_ms={} cpu_first={first_cpu:.3} cpu_done={:.3} \
                         broker_cpu_first={first_broker:.3} broker_cpu_done={:.3} records={total}",
                        now_ms(),
                        cpu_seconds(&pid, clk),
                        broker_cpu()
                    );
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(format!("timed out: {topic} did not reach {target} records").into())
        }
        "latency" => {
            let count: usize = arg(&args, "--count").ok_or("--count")?.parse()?;
            let c = consumer(&bootstrap)?;
            // Wait for the topic (the replicator or MM2 may create it).
            let mut ps = Vec::new();
            while ps.is_empty() && started.elapsed() < timeout {
                ps = partitions(&c, &topic).unwrap_or_default();
                if ps.is_empty() {
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
            let mut list = TopicPartitionList::new();
            for p in &ps {
                list.add_partition_offset(&topic, *p, Offset::End)?;
            }
            c.assign(&list)?;
            println!("ready");
            let mut latencies = Vec::with_capacity(count);
            let mut per_partition: BTreeMap<i32, usize> = BTreeMap::new();
            while latencies.len() < count && started.elapsed() < timeout {
                if let Some(Ok(m)) = c.poll(Duration::from_millis(100))
                    && let Some(ts) = m.timestamp().to_millis()
                {
                    latencies.push((now_ms() - ts).max(0));
                    *per_partition.entry(m.partition()).or_default() += 1;
                }
            }
            latencies.sort_unstable();
            let pick = |q: f64| {
                latencies
                    .get(
                        ((latencies.len() as f64 * q) as usize)
                            .min(latencies.len().saturating_sub(1)),
                    )
                    .copied()
                    .unwrap_or(-1)
            };
            println!(
                "p50_ms={} p99_ms={} count={}",
                pick(0.50),
                pick(0.99),
                latencies.len()
            );
            Ok(())
        }
        _ => Err("usage: bench_probe ends|latency --bootstrap B --topic T ...".into()),
    }
}
