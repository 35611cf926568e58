//! The picture of one drill (pure): records produced (acknowledged) and consumed per second
//! and region, with the fault, the detection, the epoch change and the restore marked. A
//! hand-written SVG: no plotting dependency.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::events::{Ack, Consumption};

/// A moment worth a vertical line.
#[derive(Clone, Debug)]
pub struct Mark {
    pub at_ms: i64,
    pub label: String,
}

const COLOURS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
];
const W: f64 = 960.0;
const PANEL_H: f64 = 200.0;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 130.0;
const TOP: f64 = 40.0;
const GAP: f64 = 66.0;

/// Per region, records per second in each one-second bucket of `[from, to)`.
fn rates<'a>(
    points: impl Iterator<Item = (&'a str, i64)>,
    from_ms: i64,
    to_ms: i64,
) -> BTreeMap<&'a str, Vec<u32>> {
    let buckets = (((to_ms - from_ms).max(1) + 999) / 1000) as usize;
    let mut out: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for (region, t) in points {
        if t < from_ms || t >= to_ms {
            continue;
        }
        let v = out.entry(region).or_insert_with(|| vec![0; buckets]);
        v[((t - from_ms) / 1000) as usize] += 1;
    }
    out
}

/// The panel's scale and the true peak: a catch-up burst (a restored region's buffered sends,
/// a consumer's backlog) would flatten the steady rates, so the scale stops at three times the
/// 90th percentile of the non-zero buckets.
fn scale(series: &BTreeMap<&str, Vec<u32>>) -> (f64, f64) {
    let mut v: Vec<u32> = series
        .values()
        .flatten()
        .copied()
        .filter(|v| *v > 0)
        .collect();
    v.sort_unstable();
    let peak = f64::from(v.last().copied().unwrap_or(1).max(1));
    let p90 = v
        .get(v.len().saturating_sub(1) * 9 / 10)
        .copied()
        .unwrap_or(1);
    (peak.min(f64::from(p90.max(1)) * 3.0), peak)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The SVG of `[from_ms, to_ms)`.
pub fn render(
    title: &str,
    regions: &[String],
    acks: &[Ack],
    consumed: &[Consumption],
    marks: &[Mark],
    from_ms: i64,
    to_ms: i64,
) -> String {
    let produced = rates(
        acks.iter().map(|a| (a.region.as_str(), a.at_ms)),
        from_ms,
        to_ms,
    );
    let consumed = rates(
        consumed.iter().map(|c| (c.region.as_str(), c.at_ms)),
        from_ms,
        to_ms,
    );
    let height = TOP + 2.0 * PANEL_H + GAP + 40.0;
    let plot_w = W - LEFT - RIGHT;
    let span_s = ((to_ms - from_ms) as f64 / 1000.0).max(1.0);
    let x = |t_s: f64| LEFT + plot_w * (t_s / span_s);
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{height}" viewBox="0 0 {W} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{LEFT}" y="20" font-size="15" font-weight="bold">{}</text>"#,
        escape(title)
    );
    let colour = |region: &str| {
        let i = regions.iter().position(|r| r == region).unwrap_or(0);
        COLOURS[i % COLOURS.len()]
    };
    for (panel, (name, series)) in [
        ("produced (acknowledged) records/s", &produced),
        ("consumed records/s (the group)", &consumed),
    ]
    .into_iter()
    .enumerate()
    {
        let top = TOP + panel as f64 * (PANEL_H + GAP);
        let (max, peak) = scale(series);
        let y = |v: f64| top + PANEL_H - PANEL_H * (v.min(max) / max);
        let _ = writeln!(
            svg,
            r##"<rect x="{LEFT}" y="{top}" width="{plot_w}" height="{PANEL_H}" fill="none" stroke="#999"/>"##
        );
        let clipped = if peak > max {
            format!(" (clipped at {max:.0}; peak {peak:.0})")
        } else {
            String::new()
        };
        let _ = writeln!(
            svg,
            r#"<text x="{LEFT}" y="{}">{name}{clipped}</text>"#,
            top - 6.0
        );
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="end">{max:.0}</text><text x="{}" y="{}" text-anchor="end">0</text>"#,
            LEFT - 4.0,
            top + 10.0,
            LEFT - 4.0,
            top + PANEL_H
        );
        for (i, (region, buckets)) in series.iter().enumerate() {
            let points: Vec<String> = buckets
                .iter()
                .enumerate()
                .map(|(b, v)| format!("{:.1},{:.1}", x(b as f64 + 0.5), y(f64::from(*v))))
                .collect();
            let c = colour(region);
            let _ = writeln!(
                svg,
                r#"<polyline fill="none" stroke="{c}" stroke-width="1.5" points="{}"/>"#,
                points.join(" ")
            );
            let _ = writeln!(
                svg,
                r#"<text x="{}" y="{}" fill="{c}">{}</text>"#,
                W - RIGHT + 8.0,
                top + 16.0 + 16.0 * i as f64,
                escape(region)
            );
        }
    }
    let bottom = TOP + 2.0 * PANEL_H + GAP;
    for (i, m) in marks.iter().enumerate() {
        if m.at_ms < from_ms || m.at_ms > to_ms {
            continue;
        }
        let mx = x((m.at_ms - from_ms) as f64 / 1000.0);
        let _ = writeln!(
            svg,
            r##"<line x1="{mx:.1}" y1="{TOP}" x2="{mx:.1}" y2="{bottom}" stroke="#444" stroke-dasharray="4 3"/>"##
        );
        let _ = writeln!(
            svg,
            r##"<text x="{:.1}" y="{}" fill="#444" font-size="11">{}</text>"##,
            mx + 3.0,
            TOP + 12.0 + 13.0 * (i % 3) as f64 + PANEL_H,
            escape(&m.label)
        );
    }
    let mut s = 0.0;
    let step = (span_s / 10.0).ceil().max(1.0);
    while s <= span_s {
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{s:.0}s</text>"#,
            x(s),
            bottom + 16.0
        );
        s += step;
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timeline_has_a_line_per_region_and_panel_and_the_marks() {
        let regions = vec!["east".to_string(), "west".to_string()];
        let acks: Vec<Ack> = (0..40)
            .map(|i| Ack {
                region: regions[i % 2].clone(),
                value: format!("1.{i}"),
                partition: 0,
                offset: i as i64,
                at_ms: 1_000 + 250 * i as i64,
            })
            .collect();
        let consumed = vec![Consumption {
            region: "west".into(),
            value: "1.0".into(),
            at_ms: 5_000,
            ..Consumption::default()
        }];
        let marks = vec![Mark {
            at_ms: 4_000,
            label: "region-down east".into(),
        }];
        let svg = render(
            "drill 1 <region-down>",
            &regions,
            &acks,
            &consumed,
            &marks,
            0,
            12_000,
        );
        assert!(svg.starts_with("<svg"));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(
            svg.matches("<polyline").count(),
            3,
            "east+west produced, west consumed"
        );
        assert!(svg.contains("region-down east"));
        assert!(svg.contains("drill 1 &lt;region-down&gt;"));
    }

    #[test]
    fn a_burst_is_clipped_so_the_steady_rate_shows() {
        let mut series = BTreeMap::new();
        series.insert("east", vec![20, 20, 20, 20, 20, 20, 20, 20, 20, 791]);
        assert_eq!(scale(&series), (60.0, 791.0));
        series.insert("east", vec![20, 21, 0]);
        assert_eq!(scale(&series), (21.0, 21.0));
    }

    #[test]
    fn rates_count_records_per_second() {
        let r = rates(
            [("east", 0), ("east", 999), ("east", 1_000)].into_iter(),
            0,
            3_000,
        );
        assert_eq!(r["east"], vec![2, 1, 0]);
    }
}
