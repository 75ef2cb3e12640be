//! SVG charts of a results file, drawn after every run and again by
//! `cargo xtask bench --charts FILE.json`: per-packet cost as a multiple of
//! the floor with Katran's ratios from issue 21 as reference lines, live
//! forwarding, the UDP probe's replies around the Master's death, and
//! apply time and RSS against config size. plotters' SVG backend; the text
//! is left to the viewer's fonts, so drawing needs no font on this machine.

use anyhow::{Context, Result, anyhow};
use plotters::{
    coord::Shift,
    prelude::*,
    style::text_anchor::{HPos, Pos, VPos},
};
use serde_json::Value;
use std::path::{Path, PathBuf};

const WIDTH: u32 = 1000;
/// Room on the left for the row names.
const LABEL_W: u32 = 340;
const FONT: &str = "sans-serif";
const BAR: RGBColor = RGBColor(0x4c, 0x72, 0xb0);
const BAR_2: RGBColor = RGBColor(0x55, 0xa8, 0x68);
const KATRAN: RGBColor = RGBColor(0xc4, 0x4e, 0x52);
const TARGET: RGBColor = RGBColor(0xdd, 0x84, 0x52);

/// A row of a results file, as far as the charts read it.
#[derive(Debug)]
struct Figure {
    section: String,
    case: String,
    unit: String,
    median: Option<f64>,
    /// What the ratio is to, and its value.
    ratio: Option<(String, f64)>,
    timeline_ms: Option<Vec<f64>>,
}

fn figures(results: &Value) -> Result<Vec<Figure>> {
    let rows = results["rows"]
        .as_array()
        .context("the results have no \"rows\" array")?;
    rows.iter()
        .enumerate()
        .map(|(i, r)| {
            let text = |k: &str| {
                r[k].as_str()
                    .map(str::to_string)
                    .with_context(|| format!("row {i} has no \"{k}\""))
            };
            Ok(Figure {
                section: text("section")?,
                case: text("case")?,
                unit: text("unit")?,
                median: r["median"].as_f64(),
                ratio: r["ratio"]["to"]
                    .as_str()
                    .zip(r["ratio"]["value"].as_f64())
                    .map(|(to, v)| (to.to_string(), v)),
                timeline_ms: r["timeline_ms"]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_f64).collect()),
            })
        })
        .collect()
}

/// One chart, drawn.
pub struct Chart {
    /// Its file is `<results stem>-<name>.svg`.
    pub name: &'static str,
    pub svg: String,
}

type Draw = fn(&[Figure]) -> Result<Option<String>>;

/// Each chart, and what it is of (for "no data" notes).
const CHARTS: [(&str, &str, Draw); 4] = [
    ("pktcost", "per-packet cost rows", pktcost),
    ("live", "live Mpps rows", live),
    ("failover", "failover rows with a timeline_ms", failover),
    ("control", "control apply and RSS rows", control),
];

/// Every chart `results` has the figures for; for the others, why not.
pub fn draw(results: &Value) -> Result<(Vec<Chart>, Vec<String>)> {
    let figs = figures(results)?;
    let (mut charts, mut skipped) = (Vec::new(), Vec::new());
    for (name, of, draw) in CHARTS {
        match draw(&figs).with_context(|| format!("drawing the {name} chart"))? {
            Some(svg) => charts.push(Chart { name, svg }),
            None => skipped.push(format!("{name}: no {of} in the results")),
        }
    }
    Ok((charts, skipped))
}

/// Draws the charts of the results in `json` and writes each next to it
/// as `<stem>-<chart>.svg`; returns the files written.
pub fn write(results: &Value, json: &Path) -> Result<Vec<PathBuf>> {
    let (charts, skipped) = draw(results)?;
    for why in skipped {
        eprintln!("bench: no chart for {why}");
    }
    let stem = json
        .file_stem()
        .with_context(|| format!("{} has no file name", json.display()))?
        .to_string_lossy();
    let dir = json.parent().unwrap_or(Path::new("."));
    charts
        .into_iter()
        .map(|c| {
            let path = dir.join(format!("{stem}-{}.svg", c.name));
            std::fs::write(&path, c.svg).with_context(|| format!("writing {}", path.display()))?;
            Ok(path)
        })
        .collect()
}

/// `cargo xtask bench --charts FILE.json`: redraws the charts of an
/// existing results file, measuring nothing.
pub fn redraw(json: &Path) -> Result<()> {
    let text =
        std::fs::read_to_string(json).with_context(|| format!("reading {}", json.display()))?;
    let results: Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", json.display()))?;
    for path in write(&results, json)? {
        println!("{}", path.display());
    }
    Ok(())
}

/// A horizontal bar: its row name, length, colour and the note at its end.
struct Bar {
    label: String,
    value: f64,
    color: RGBColor,
    note: String,
}

/// A vertical reference line across a bar panel.
struct RefLine {
    at: f64,
    label: String,
    color: RGBColor,
}

/// An axis value without float noise: 0.6, not 0.6000000000000001.
fn tick(x: f64) -> String {
    let s = format!("{x:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Height of a bar panel of `n` bars.
fn bars_height(n: usize) -> u32 {
    90 + 24 * n as u32
}

fn svg_of(
    height: u32,
    draw: impl FnOnce(&DrawingArea<SVGBackend, Shift>) -> Result<()>,
) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE)?;
        draw(&root)?;
        root.present()?;
    }
    Ok(svg)
}

/// A panel of horizontal bars with vertical reference lines.
fn bars(
    area: &DrawingArea<SVGBackend, Shift>,
    title: &str,
    x_desc: &str,
    bars: &[Bar],
    refs: &[RefLine],
) -> Result<()> {
    let n = bars.len();
    let top = bars
        .iter()
        .map(|b| b.value)
        .chain(refs.iter().map(|r| r.at))
        .fold(0.0, f64::max);
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FONT, 18))
        .margin(10)
        .margin_right(30)
        .x_label_area_size(40)
        .y_label_area_size(LABEL_W)
        .build_cartesian_2d(0f64..(top * 1.3).max(1e-9), (0..n).into_segmented())?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(n)
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => (n.checked_sub(i + 1))
                .and_then(|j| bars.get(j))
                .map_or(String::new(), |b| b.label.clone()),
            _ => String::new(),
        })
        .x_desc(x_desc)
        .x_label_formatter(&|x| tick(*x))
        .light_line_style(TRANSPARENT)
        .label_style((FONT, 12))
        .draw()?;
    // The first bar on top: the axis counts from the bottom.
    let row = |i: usize| n - 1 - i;
    chart.draw_series(bars.iter().enumerate().map(|(i, b)| {
        let i = row(i);
        let mut r = Rectangle::new(
            [
                (0.0, SegmentValue::Exact(i)),
                (b.value, SegmentValue::Exact(i + 1)),
            ],
            b.color.filled(),
        );
        r.set_margin(3, 3, 0, 0);
        r
    }))?;
    let note = TextStyle::from((FONT, 11).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    chart.draw_series(bars.iter().enumerate().map(|(i, b)| {
        Text::new(
            format!(" {}", b.note),
            (b.value, SegmentValue::CenterOf(row(i))),
            note.clone(),
        )
    }))?;
    for r in refs {
        let color = r.color;
        chart
            .draw_series(DashedLineSeries::new(
                [(r.at, SegmentValue::Exact(0)), (r.at, SegmentValue::Last)],
                6,
                4,
                color.stroke_width(2),
            ))?
            .label(r.label.clone())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    if !refs.is_empty() {
        chart
            .configure_series_labels()
            .label_font((FONT, 12))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()?;
    }
    Ok(())
}

/// Katran's costs from issue 21 as multiples of the floor of the same
/// timing, and the targets (0.8 × Katran) for xlb; by whether the timing
/// is one packet per call.
fn katran_lines(one_per_call: bool) -> Vec<RefLine> {
    let lines: &[(f64, &str)] = if one_per_call {
        &[
            (2.9, "Katran: existing flow, IPIP (2.9x)"),
            (5.5, "Katran: new flow, Maglev + IPIP (5.5x)"),
            (2.3, "target: TUN existing flow (2.3x)"),
            (4.4, "target: TUN new flow, mh (4.4x)"),
        ]
    } else {
        &[
            (2.8, "Katran: not for a VIP (2.8x)"),
            (2.2, "target: not for a VIP (2.2x)"),
        ]
    };
    lines
        .iter()
        .map(|&(at, label)| RefLine {
            at,
            label: label.to_string(),
            color: if label.starts_with("Katran") {
                KATRAN
            } else {
                TARGET
            },
        })
        .collect()
}

/// ns/packet of each path as a multiple of the floor of the same timing,
/// one panel per timing (the floor a row's ratio names).
fn pktcost(figs: &[Figure]) -> Result<Option<String>> {
    let mut panels: Vec<(String, Vec<Bar>)> = Vec::new();
    for f in figs
        .iter()
        .filter(|f| f.section == "pktcost" && f.unit == "ns/pkt")
    {
        let (Some(median), Some((to, ratio))) = (f.median, &f.ratio) else {
            continue;
        };
        let bar = Bar {
            label: f.case.clone(),
            value: *ratio,
            color: BAR,
            note: format!("{ratio:.2}x ({median:.0} ns)"),
        };
        match panels.iter_mut().find(|(t, _)| t == to) {
            Some((_, bars)) => bars.push(bar),
            None => panels.push((to.clone(), vec![bar])),
        }
    }
    if panels.is_empty() {
        return Ok(None);
    }
    let heights: Vec<u32> = panels.iter().map(|(_, b)| bars_height(b.len())).collect();
    svg_of(heights.iter().sum(), |root| {
        let mut rest = root.clone();
        for ((to, b), h) in panels.iter().zip(&heights) {
            let (panel, below) = rest.split_vertically(*h);
            bars(
                &panel,
                &format!("Per-packet cost as a multiple of the {to}"),
                &format!("x {to} (same timing)"),
                b,
                &katran_lines(to.contains("1/call")),
            )?;
            rest = below;
        }
        Ok(())
    })
    .map(Some)
}

/// A case's name up to its first qualifier: "nftables DNAT (peer), veth"
/// is "nftables DNAT".
fn short_case(case: &str) -> &str {
    case.split([':', ',', '(']).next().unwrap_or(case).trim()
}

/// Mpps of each live row measured on this machine (the qemu guest's
/// emulated figures are on another scale and stay in the table).
fn live(figs: &[Figure]) -> Result<Option<String>> {
    let b: Vec<Bar> = figs
        .iter()
        .filter(|f| f.section == "live" && f.unit == "Mpps" && !f.case.contains("qemu"))
        .filter_map(|f| {
            let m = f.median?;
            Some(Bar {
                label: f.case.clone(),
                value: m,
                color: if f.case.ends_with("2 CPUs") {
                    BAR_2
                } else {
                    BAR
                },
                note: match &f.ratio {
                    Some((to, q)) => format!("{m:.3} Mpps, {q:.2}x {}", short_case(to)),
                    None => format!("{m:.3} Mpps"),
                },
            })
        })
        .collect();
    if b.is_empty() {
        return Ok(None);
    }
    svg_of(bars_height(b.len()), |root| {
        bars(
            root,
            "Live forwarding on veth, per CPU-second (packets counted / CPU time)",
            "Mpps",
            &b,
            &[],
        )
    })
    .map(Some)
}

/// A failover case's strip: its label and when each reply arrived (ms).
type Strip = (String, Vec<f64>);

/// The probe's replies around the Master's death: one strip per case
/// (dots where a reply arrived, the gap is the outage), a panel per VRRP
/// version and interval.
fn failover(figs: &[Figure]) -> Result<Option<String>> {
    let mut panels: Vec<(String, Vec<Strip>)> = Vec::new();
    for f in figs.iter().filter(|f| f.section == "failover") {
        let Some(t) = f.timeline_ms.as_ref().filter(|t| !t.is_empty()) else {
            continue;
        };
        let label = f.case.split(':').next().unwrap_or(&f.case);
        let panel = label.split(", ").nth(1).unwrap_or("failover").to_string();
        let strip = format!(
            "{label}: {} ms silent",
            f.median.map_or("?".into(), |m| format!("{m:.0}"))
        );
        match panels.iter_mut().find(|(p, _)| *p == panel) {
            Some((_, s)) => s.push((strip, t.clone())),
            None => panels.push((panel, vec![(strip, t.clone())])),
        }
    }
    if panels.is_empty() {
        return Ok(None);
    }
    let heights: Vec<u32> = panels.iter().map(|(_, s)| bars_height(s.len())).collect();
    svg_of(heights.iter().sum(), |root| {
        let mut rest = root.clone();
        for ((panel, strips), h) in panels.iter().zip(&heights) {
            let (area, below) = rest.split_vertically(*h);
            timeline(&area, panel, strips)?;
            rest = below;
        }
        Ok(())
    })
    .map(Some)
}

fn timeline(area: &DrawingArea<SVGBackend, Shift>, panel: &str, strips: &[Strip]) -> Result<()> {
    let all = strips.iter().flat_map(|(_, t)| t.iter().copied());
    let (lo, hi) = all.fold((0.0f64, 0.0f64), |(lo, hi), t| (lo.min(t), hi.max(t)));
    let n = strips.len();
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!("UDP probe replies (one every 10 ms) around the Master's death, {panel}"),
            (FONT, 18),
        )
        .margin(10)
        .margin_right(30)
        .x_label_area_size(40)
        .y_label_area_size(LABEL_W)
        .build_cartesian_2d((lo - 20.0)..(hi + 20.0), (0..n).into_segmented())?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(n)
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => (n.checked_sub(i + 1))
                .and_then(|j| strips.get(j))
                .map_or(String::new(), |s| s.0.clone()),
            _ => String::new(),
        })
        .x_desc("ms from the Master going away (the dashed line: SIGKILL + link cut, or SIGTERM)")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .light_line_style(TRANSPARENT)
        .label_style((FONT, 12))
        .draw()?;
    for (i, (_, replies)) in strips.iter().enumerate() {
        // The first strip on top: the axis counts from the bottom.
        let i = n - 1 - i;
        chart.draw_series(
            replies
                .iter()
                .map(|&t| Circle::new((t, SegmentValue::CenterOf(i)), 2, BAR.filled())),
        )?;
    }
    chart.draw_series(DashedLineSeries::new(
        [(0.0, SegmentValue::Exact(0)), (0.0, SegmentValue::Last)],
        6,
        4,
        KATRAN.stroke_width(2),
    ))?;
    Ok(())
}

/// `N` of a control row named `<prefix>N services x …`.
fn services(case: &str, prefix: &str) -> Option<f64> {
    case.strip_prefix(prefix)?
        .split(" services")
        .next()?
        .trim()
        .parse()
        .ok()
}

/// Apply time and agent RSS against the number of services (× 100 reals),
/// with issue 21's targets at 1,000 services.
fn control(figs: &[Figure]) -> Result<Option<String>> {
    let points = |prefix: &str, unit: &str| -> Vec<(f64, f64)> {
        let mut p: Vec<(f64, f64)> = figs
            .iter()
            .filter(|f| f.section == "control" && f.unit == unit)
            .filter_map(|f| Some((services(&f.case, prefix)?, f.median?)))
            .collect();
        p.sort_by(|a, b| a.0.total_cmp(&b.0));
        p
    };
    let apply = points("apply ", "s");
    let rss = points("agent RSS after applying ", "MiB");
    if apply.is_empty() && rss.is_empty() {
        return Ok(None);
    }
    svg_of(420, |root| {
        let (left, right) = root.split_horizontally(WIDTH / 2);
        line_panel(
            &left,
            "Start to forwarding",
            "s",
            &apply,
            (1.0, "target at 1,000 services: 1 s"),
        )?;
        line_panel(
            &right,
            "Agent RSS once forwarding",
            "MiB",
            &rss,
            (64.0, "target at 1,000 services: 64 MiB"),
        )
    })
    .map(Some)
}

fn line_panel(
    area: &DrawingArea<SVGBackend, Shift>,
    title: &str,
    unit: &str,
    points: &[(f64, f64)],
    (target, target_label): (f64, &str),
) -> Result<()> {
    let x_hi = points.iter().map(|p| p.0).fold(1000.0, f64::max) * 1.1;
    let y_hi = points.iter().map(|p| p.1).fold(target, f64::max) * 1.2;
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FONT, 18))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d(0f64..x_hi, 0f64..y_hi)?;
    chart
        .configure_mesh()
        .x_desc("services x 100 reals")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_desc(unit)
        .light_line_style(TRANSPARENT)
        .label_style((FONT, 12))
        .draw()?;
    chart
        .draw_series(LineSeries::new(points.iter().copied(), BAR.stroke_width(2)))?
        .label("measured")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BAR.stroke_width(2)));
    chart.draw_series(points.iter().map(|&p| Circle::new(p, 4, BAR.filled())))?;
    let note = TextStyle::from((FONT, 11).into_font()).pos(Pos::new(HPos::Left, VPos::Bottom));
    chart.draw_series(
        points
            .iter()
            .map(|&(x, y)| Text::new(format!(" {y:.2} {unit}"), (x, y), note.clone())),
    )?;
    chart
        .draw_series(DashedLineSeries::new(
            [(0.0, target), (x_hi, target)],
            6,
            4,
            TARGET.stroke_width(2),
        ))?
        .label(target_label.to_string())
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], TARGET.stroke_width(2)));
    chart
        .configure_series_labels()
        .label_font((FONT, 12))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn results() -> Value {
        json!({
            "schema": 1,
            "rows": [
                { "section": "pktcost", "case": "MAC swap + XDP_TX (floor)", "unit": "ns/pkt",
                  "median": 11.0, "ratio": { "to": "MAC-swap floor", "value": 1.0 } },
                { "section": "pktcost", "case": "xlb: not a service (XDP_PASS)", "unit": "ns/pkt",
                  "median": 36.0, "ratio": { "to": "MAC-swap floor", "value": 3.27 } },
                { "section": "pktcost", "case": "xlb DR: new flow, mh, IPv4, 1/call", "unit": "ns/pkt",
                  "median": 304.0, "ratio": { "to": "1/call floor", "value": 5.07 } },
                { "section": "pktcost", "case": "xlb NAT: new flow, IPv6, 1/call", "unit": "ns/pkt",
                  "not_measured": "not yet" },
                { "section": "live", "case": "xlb DR, veth", "unit": "Mpps", "median": 0.37,
                  "ratio": { "to": "floor: MAC rewrite + redirect, veth", "value": 0.78 } },
                { "section": "live", "case": "xlb DR, veth, 2 CPUs", "unit": "Mpps", "median": 0.74 },
                { "section": "live", "case": "xlb DR, qemu guest", "unit": "Mpps", "median": 0.25 },
                { "section": "live", "case": "xlb DR, veth: CPU time per packet, 2 CPUs",
                  "unit": "ns/pkt", "median": 2600.0 },
                { "section": "control", "case": "apply 100 services x 100 reals, start to maps ready",
                  "unit": "s", "median": 0.94 },
                { "section": "control", "case": "apply 1000 services x 100 reals, start to maps ready",
                  "unit": "s", "median": 2.87 },
                { "section": "control", "case": "agent RSS after applying 1000 services x 100 reals",
                  "unit": "MiB", "median": 115.25 },
                { "section": "control", "case": "apply 300 services x 100 reals, start to maps ready",
                  "unit": "s", "not_measured": "limit" },
                { "section": "failover", "case": "xlb, VRRPv3 100 ms, SIGKILL: traffic stopped",
                  "unit": "ms", "median": 308.0, "timeline_ms": [-30.0, -20.0, -10.0, 300.0, 310.0] },
                { "section": "failover", "case": "keepalived, VRRPv2 1 s, SIGTERM: traffic stopped",
                  "unit": "ms", "median": 620.0, "timeline_ms": [-10.0, 612.0] },
                { "section": "failover", "case": "xlb, VRRPv3 100 ms, SIGTERM: traffic back after the last advert",
                  "unit": "ms", "median": 66.0 }
            ]
        })
    }

    fn chart<'a>(charts: &'a [Chart], name: &str) -> &'a str {
        &charts
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no {name} chart"))
            .svg
    }

    #[test]
    fn every_chart_is_drawn_from_its_rows_with_its_reference_lines() {
        let (charts, skipped) = draw(&results()).unwrap();
        assert!(skipped.is_empty(), "{skipped:?}");
        assert_eq!(charts.len(), 4);
        for c in &charts {
            assert!(c.svg.starts_with("<svg"), "{}: {}", c.name, &c.svg[..40]);
            assert!(c.svg.trim_end().ends_with("</svg>"), "{}", c.name);
        }
        let p = chart(&charts, "pktcost");
        assert!(p.contains("xlb: not a service (XDP_PASS)"));
        assert!(p.contains("3.27x (36 ns)"));
        assert!(p.contains("Per-packet cost as a multiple of the 1/call floor"));
        assert!(p.contains("Katran: not for a VIP (2.8x)"));
        assert!(p.contains("Katran: new flow, Maglev + IPIP (5.5x)"));
        assert!(
            !p.contains("xlb NAT: new flow, IPv6"),
            "not-measured rows have no bar"
        );
        let l = chart(&charts, "live");
        assert!(l.contains("xlb DR, veth, 2 CPUs"));
        assert!(l.contains("0.370 Mpps, 0.78x floor"), "{l}");
        assert!(
            !l.contains("qemu"),
            "the guest's emulated figures are not on this scale"
        );
        assert!(!l.contains("CPU time per packet"), "only Mpps rows");
        let f = chart(&charts, "failover");
        assert!(f.contains("xlb, VRRPv3 100 ms, SIGKILL: 308 ms silent"));
        assert!(
            f.contains("around the Master&apos;s death, VRRPv2 1 s") || f.contains("VRRPv2 1 s")
        );
        assert_eq!(
            f.matches("<circle").count(),
            7,
            "one dot per reply (5 + 2): {f}"
        );
        let c = chart(&charts, "control");
        assert!(c.contains("2.87 s") && c.contains("115.25 MiB"));
        assert!(c.contains("target at 1,000 services: 64 MiB"));
    }

    #[test]
    fn a_chart_without_its_rows_is_skipped_with_the_reason() {
        let only_pktcost = json!({ "rows": [
            { "section": "pktcost", "case": "floor", "unit": "ns/pkt", "median": 8.0,
              "ratio": { "to": "MAC-swap floor", "value": 1.0 } },
            { "section": "failover", "case": "xlb, VRRPv3 100 ms, SIGKILL: traffic stopped",
              "unit": "ms", "median": 300.0 }
        ]});
        let (charts, skipped) = draw(&only_pktcost).unwrap();
        assert_eq!(charts.len(), 1);
        assert_eq!(charts[0].name, "pktcost");
        assert_eq!(skipped.len(), 3);
        assert!(
            skipped
                .iter()
                .any(|s| s == "failover: no failover rows with a timeline_ms in the results"),
            "{skipped:?}"
        );
    }

    #[test]
    fn a_malformed_file_is_an_error_naming_what_is_missing() {
        let e = draw(&json!({ "schema": 1 })).err().unwrap();
        assert!(e.to_string().contains("no \"rows\""), "{e}");
        let e = draw(&json!({ "rows": [{ "section": "live" }] }))
            .err()
            .unwrap();
        assert!(format!("{e:#}").contains("row 0 has no \"case\""), "{e:#}");
    }

    #[test]
    fn axis_values_have_no_float_noise() {
        assert_eq!(tick(0.6000000000000001), "0.6");
        assert_eq!(tick(20.0), "20");
        assert_eq!(tick(0.125), "0.125");
    }

    #[test]
    fn the_service_count_comes_from_the_row_name() {
        assert_eq!(
            services(
                "apply 1000 services x 100 reals, start to maps ready",
                "apply "
            ),
            Some(1000.0)
        );
        assert_eq!(
            services(
                "agent RSS after applying 300 services x 100 reals",
                "agent RSS after applying "
            ),
            Some(300.0)
        );
        assert_eq!(
            services("apply one health change, 100 services", "apply "),
            None
        );
    }

    #[test]
    fn charts_are_written_next_to_the_results_file() {
        let dir = std::env::temp_dir().join(format!("xlb-charts-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let json = dir.join("2026-01-02-0123456789ab.json");
        std::fs::write(&json, results().to_string()).unwrap();
        redraw(&json).unwrap();
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".svg"))
            .collect();
        names.sort();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            names,
            [
                "2026-01-02-0123456789ab-control.svg",
                "2026-01-02-0123456789ab-failover.svg",
                "2026-01-02-0123456789ab-live.svg",
                "2026-01-02-0123456789ab-pktcost.svg",
            ]
        );
    }
}
