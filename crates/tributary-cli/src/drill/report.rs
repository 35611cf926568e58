//! The drill's outputs for people and tools: a progress row per drill, the table of
//! verdicts, and the JSON report.

use std::path::Path;

use super::consumer_events::ConsumerEventsFrom;
use super::run::DrillOptions;
use super::verdict::{DrillRun, DrillVerdict, Summary, by_fault};

fn s(x: Option<f64>) -> String {
    x.map(|x| format!("{x:.1}")).unwrap_or_else(|| "-".into())
}

/// One line as a drill completes (before the verdict, which needs the drained load).
pub fn print_row(run: &DrillRun) {
    let rto = run
        .phases
        .primary_ms
        .or(run.phases.first_consumed_ms)
        .map(|t| (t - run.started_ms) as f64 / 1000.0);
    println!(
        "  drill {:>3}  {:<11} {:>8} → {:<8} epoch {} → {}  rto {:>5}s  {}",
        run.index + 1,
        run.fault.map(|f| f.name()).unwrap_or("-"),
        run.from,
        run.to,
        run.epoch_before,
        run.epoch_after,
        s(rto),
        run.error.as_deref().unwrap_or("ok")
    );
}

/// The table of every drill's verdict.
pub fn render_table(verdicts: &[DrillVerdict]) -> String {
    let header = [
        "#", "FAULT", "MOVE", "EPOCH", "RTO_S", "DETECT", "DECIDE", "TRANSL", "COMMIT", "READY",
        "FIRST", "ACKED", "LOST", "SKIP", "DUPS", "DEDUPED", "BOUNDS", "SPLIT_S", "NONMONO",
        "RESULT",
    ];
    let rows: Vec<Vec<String>> = verdicts
        .iter()
        .map(|v| {
            vec![
                (v.index + 1).to_string(),
                v.fault.map(|f| f.to_string()).unwrap_or_else(|| "-".into()),
                format!("{}→{}", v.from, v.to),
                format!("{}→{}", v.epoch_before, v.epoch_after),
                s(v.rto_s),
                s(v.phases.detect_s),
                s(v.phases.decide_s),
                s(v.phases.translate_s),
                s(v.phases.commit_s),
                s(v.phases.consumers_ready_s),
                s(v.phases.first_record_s),
                v.acked.to_string(),
                v.lost.to_string(),
                v.skipped.to_string(),
                v.dups_raw.to_string(),
                v.dups_deduped.to_string(),
                format!(
                    "{}/{}",
                    v.dups_raw_bound
                        .map(|b| b.to_string())
                        .unwrap_or_else(|| "-".into()),
                    v.dups_deduped_bound
                        .map(|b| b.to_string())
                        .unwrap_or_else(|| "-".into())
                ),
                format!("{:.1}", v.split_brain_s),
                v.non_monotonic.to_string(),
                if v.passed() {
                    if v.dups_within_bound {
                        "ok"
                    } else {
                        "ok (dups over bound)"
                    }
                    .to_string()
                } else if let Some(e) = &v.error {
                    format!("FAILED: {e}")
                } else if v.fenced_before_taken == Some(false) {
                    "FAILED: the Lease moved before the isolated holder was seen fenced".into()
                } else {
                    "FAILED".to_string()
                },
            ]
        })
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut out = String::new();
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(c);
            } else {
                out.push_str(c);
                out.push_str(&" ".repeat(w - c.chars().count() + 2));
            }
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    for r in rows {
        out.push_str(&line(r));
    }
    out
}

pub fn print_table(verdicts: &[DrillVerdict]) {
    println!();
    print!("{}", render_table(verdicts));
}

/// The JSON report: the options, the summary, per fault kind, and every drill's observation
/// and verdict.
pub fn report_json(
    ns: &str,
    opts: &DrillOptions,
    topic: &str,
    work_dir: &Path,
    runs: &[DrillRun],
    verdicts: &[DrillVerdict],
    summary: &Summary,
) -> serde_json::Value {
    serde_json::json!({
        "namespace": ns,
        "group": opts.group,
        "topic": topic,
        "seed": opts.seed,
        "faults": opts.faults,
        "ratePerRegion": opts.rate,
        "eventsDir": work_dir,
        "consumerEvents": match opts.consumer_events {
            ConsumerEventsFrom::Files => "files",
            ConsumerEventsFrom::Api => "api",
        },
        "summary": summary,
        "summaryLine": summary.line(),
        "passed": summary.passed(),
        "byFault": by_fault(verdicts),
        "drills": runs.iter().zip(verdicts).map(|(r, v)| serde_json::json!({
            "observed": r,
            "verdict": v,
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drill::faults::Fault;
    use crate::drill::verdict::{DrillRun, judge};

    #[test]
    fn the_table_has_a_row_per_drill_with_its_verdict() {
        let runs = vec![DrillRun {
            index: 0,
            fault: Some(Fault::RegionDown),
            from: "east".into(),
            to: "west".into(),
            started_ms: 0,
            epoch_before: 1,
            epoch_after: 2,
            ..DrillRun::default()
        }];
        let text = render_table(&judge(&runs, &[], &[], &[], &[], true));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("#  FAULT"));
        assert!(lines[1].contains("region-down"));
        assert!(lines[1].contains("east→west"));
        assert!(lines[1].ends_with("ok"));
    }
}
