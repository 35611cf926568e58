//! The operator's side of a standby sync's HTTP endpoints (see
//! `tributary_checkpoint_sync::http`): its freshness from `/metrics`, its last committed plan
//! from `GET /plan`, the final round of a planned move from `POST /final`, and the zombie
//! commits it refused from `GET /status`. Plain HTTP/1.0
//! on the pod IP: one request per connection, every call bounded in time.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tributary_api::consumer_group_failover::{MovePlan, SourceWatermark};
use tributary_core::TranslationPlan;
use tributary_core::commit_epoch::ZombieReport;

use crate::sync_job::SYNC_PORT;

/// `MovePlan::origin` of a plan from `POST /final`.
pub const ORIGIN_FINAL: &str = "Final";
/// `MovePlan::origin` of a plan from `GET /plan`.
pub const ORIGIN_LAST_STANDBY_ROUND: &str = "LastStandbyRound";

/// One request and its answer (status code, body); `Err` says why, for a person.
async fn request(
    ip: &str,
    method: &str,
    path: &str,
    timeout: Duration,
) -> Result<(u16, String), String> {
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect((ip, SYNC_PORT as u16))
            .await
            .map_err(|e| format!("cannot connect to {ip}:{SYNC_PORT}: {e}"))?;
        s.write_all(
            format!("{method} {path} HTTP/1.0\r\nHost: {ip}\r\nContent-Length: 0\r\n\r\n")
                .as_bytes(),
        )
        .await
        .map_err(|e| format!("sending to {ip}:{SYNC_PORT}: {e}"))?;
        let mut out = String::new();
        s.read_to_string(&mut out)
            .await
            .map_err(|e| format!("reading from {ip}:{SYNC_PORT}: {e}"))?;
        Ok::<_, String>(out)
    };
    let raw = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| {
            format!("{ip}:{SYNC_PORT} did not answer {method} {path} within {timeout:?}")
        })??;
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw.as_str(), ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| format!("{ip}:{SYNC_PORT} answered {method} {path} with no HTTP status"))?;
    Ok((code, body.to_string()))
}

/// Unix time of a standby's last full match; `None` when it does not answer or never synced.
pub async fn last_synced(ip: &str) -> Option<f64> {
    let (code, body) = request(ip, "GET", "/metrics", Duration::from_secs(2))
        .await
        .ok()?;
    (code == 200).then_some(())?;
    body.lines()
        .find_map(|l| l.strip_prefix("tributary_checkpoint_sync_last_synced_timestamp_seconds "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|v| *v > 0.0)
}

/// The plan of the standby's last committed round (`None`: it has none, or did not answer).
pub async fn last_plan(ip: &str) -> Option<TranslationPlan> {
    match request(ip, "GET", "/plan", Duration::from_secs(3)).await {
        Ok((200, body)) => serde_json::from_str(&body).ok(),
        _ => None,
    }
}

/// The standby's zombie commits (`None`: it does not answer, or is older than `GET /status`):
/// `zombie_commits_total` since it started and the partitions a zombie's commit holds now
/// (`held_partitions`: not translated, the standby keeps its last good position).
pub async fn zombie_report(ip: &str) -> Option<ZombieReport> {
    match request(ip, "GET", "/status", Duration::from_secs(2)).await {
        Ok((200, body)) => serde_json::from_str(&body).ok(),
        _ => None,
    }
}

/// Asks the standby (acting for `epoch`) for the final round of a planned move; `Ok` once it
/// committed and read the plan back, `Err` with the standby's reason otherwise.
pub async fn final_round(
    ip: &str,
    epoch: u64,
    timeout: Duration,
) -> Result<TranslationPlan, String> {
    let (code, body) = request(ip, "POST", &format!("/final?epoch={epoch}"), timeout).await?;
    if code != 200 {
        return Err(format!("the standby sync answered {code}: {}", body.trim()));
    }
    serde_json::from_str(&body).map_err(|e| format!("the standby sync's plan does not parse: {e}"))
}

/// What status keeps of a plan.
pub fn move_plan(plan: &TranslationPlan, origin: &str) -> MovePlan {
    MovePlan {
        origin: origin.into(),
        received: Some(Time(Timestamp::now())),
        exact: plan.exact,
        max_duplicates: plan.max_duplicates.min(i64::MAX as u64) as i64,
        max_duplicates_after_dedupe: plan.max_duplicates_after_dedupe.min(i64::MAX as u64) as i64,
        watermarks: plan
            .watermarks()
            .into_iter()
            .map(|(source, offset)| SourceWatermark {
                source_region: source.region,
                topic: source.topic,
                partition: source.partition as i32,
                offset: offset.min(i64::MAX as u64) as i64,
            })
            .collect(),
    }
}
