//! `load.png`: throughput and p99 against concurrency, one line per scenario;
//! `load-p99-time.png`: the p99 of each second of the measured time, so a stall shows;
//! `load-soak.png` (`--soak`): the server's RSS and the p99 over the soak. Text
//! needs a TrueType font from the machine; without one the charts are drawn without text and
//! the colour legend is in the Markdown.

use std::path::Path;

use plotters::prelude::*;

use crate::scenario::{Kind, Outcome};
use crate::soak::{Soak, TOLERANCE};

/// Per scenario colour (also listed in the Markdown).
pub const COLORS: [(Kind, RGBColor, &str); 9] = [
    (Kind::Healthz, RGBColor(150, 150, 150), "light grey"),
    (Kind::Cc, RGBColor(31, 119, 180), "blue"),
    (Kind::Exchange, RGBColor(214, 39, 40), "red"),
    (Kind::ExchangeDpop, RGBColor(227, 119, 194), "pink"),
    (Kind::SubExchange, RGBColor(255, 127, 14), "orange"),
    (Kind::IntrospectHot, RGBColor(44, 160, 44), "green"),
    (Kind::IntrospectRandom, RGBColor(23, 190, 207), "cyan"),
    (Kind::Attest, RGBColor(148, 103, 189), "purple"),
    (Kind::RevokeMixed, RGBColor(60, 60, 60), "dark grey"),
];

fn color(k: Kind) -> RGBColor {
    COLORS
        .iter()
        .find(|(c, _, _)| *c == k)
        .map(|(_, c, _)| *c)
        .unwrap_or(BLACK)
}

pub fn legend() -> String {
    let v: Vec<String> = COLORS
        .iter()
        .map(|(k, _, n)| format!("{} = {n}", k.name()))
        .collect();
    v.join(", ")
}

/// Registers a sans-serif font found on this machine; false if there is none.
pub fn load_font() -> bool {
    let mut candidates: Vec<String> = [
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/TTF/DejaVuSans.ttf",
        "/usr/share/fonts/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
        "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
        "/usr/share/fonts/liberation/LiberationSans-Regular.ttf",
        "/System/Library/Fonts/Supplemental/Arial.ttf",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let Ok(o) = std::process::Command::new("fc-match")
        .args(["-f", "%{file}", "sans-serif"])
        .output()
    {
        if let Ok(f) = String::from_utf8(o.stdout) {
            if f.ends_with(".ttf") || f.ends_with(".otf") {
                candidates.insert(0, f);
            }
        }
    }
    for path in candidates {
        if let Ok(bytes) = std::fs::read(&path) {
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                return true;
            }
        }
    }
    false
}

type Series = Vec<(Kind, Vec<(f64, f64)>)>;

fn series(outcomes: &[Outcome], y: impl Fn(&Outcome) -> f64) -> Series {
    let mut out: Series = Vec::new();
    for k in Kind::ALL {
        let mut pts: Vec<(f64, f64)> = outcomes
            .iter()
            .filter(|o| o.kind == k)
            .map(|o| ((o.conns.max(1) as f64).log2(), y(o)))
            .filter(|(_, v)| v.is_finite() && *v > 0.0)
            .collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        if !pts.is_empty() {
            out.push((k, pts));
        }
    }
    out
}

pub fn draw(path: &Path, title: &str, outcomes: &[Outcome], text: bool) -> anyhow::Result<()> {
    let rps = series(outcomes, |o| o.rps());
    let p99 = series(outcomes, |o| {
        o.total().value_at_quantile(0.99) as f64 / 1000.0
    });
    let xmax = outcomes
        .iter()
        .map(|o| (o.conns.max(1) as f64).log2())
        .fold(1.0, f64::max);
    let ymax_rps = rps
        .iter()
        .flat_map(|(_, p)| p.iter().map(|(_, y)| *y))
        .fold(1.0, f64::max);
    let (mut lo, mut hi) = (f64::MAX, 0.01f64);
    for (_, p) in &p99 {
        for (_, y) in p {
            lo = lo.min(*y);
            hi = hi.max(*y);
        }
    }
    let lo = if lo == f64::MAX { 0.01 } else { lo };

    let root = BitMapBackend::new(path, (1500, 650)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = if text {
        root.titled(title, ("sans-serif", 24))?
    } else {
        root
    };
    let (left, right) = root.split_horizontally(750);
    let xr = -0.3f64..xmax + 0.3;
    let x_fmt = |v: &f64| {
        if (v - v.round()).abs() < 1e-6 && *v >= 0.0 {
            format!("{:.0}", 2f64.powf(*v))
        } else {
            String::new()
        }
    };
    let xlabels = (xmax.ceil() as usize) + 2;

    {
        let mut b = ChartBuilder::on(&left);
        b.margin(20);
        if text {
            b.caption("throughput (req/s)", ("sans-serif", 20))
                .x_label_area_size(45)
                .y_label_area_size(75);
        }
        let mut c = b.build_cartesian_2d(xr.clone(), 0f64..ymax_rps * 1.1)?;
        if text {
            c.configure_mesh()
                .x_labels(xlabels)
                .x_label_formatter(&x_fmt)
                .y_label_formatter(&|v| format!("{v:.0}"))
                .x_desc("concurrent connections")
                .y_desc("req/s")
                .draw()?;
        }
        for (k, pts) in &rps {
            let col = color(*k);
            let s = c.draw_series(LineSeries::new(pts.clone(), col.stroke_width(2)))?;
            if text {
                s.label(k.name()).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], col.stroke_width(2))
                });
            }
            c.draw_series(pts.iter().map(|p| Circle::new(*p, 4, col.filled())))?;
        }
        if text {
            c.configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font(("sans-serif", 15))
                .draw()?;
        }
    }
    {
        let mut b = ChartBuilder::on(&right);
        b.margin(20);
        if text {
            b.caption("p99 latency (ms, log scale)", ("sans-serif", 20))
                .x_label_area_size(45)
                .y_label_area_size(75);
        }
        let mut c = b.build_cartesian_2d(xr, (lo / 1.5..hi * 1.5).log_scale())?;
        if text {
            c.configure_mesh()
                .x_labels(xlabels)
                .x_label_formatter(&x_fmt)
                .y_label_formatter(&|v| format!("{v}"))
                .x_desc("concurrent connections")
                .y_desc("p99 ms")
                .draw()?;
        }
        for (k, pts) in &p99 {
            let col = color(*k);
            let s = c.draw_series(LineSeries::new(pts.clone(), col.stroke_width(2)))?;
            if text {
                s.label(k.name()).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], col.stroke_width(2))
                });
            }
            c.draw_series(pts.iter().map(|p| Circle::new(*p, 4, col.filled())))?;
        }
        if text {
            c.configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font(("sans-serif", 15))
                .draw()?;
        }
    }
    root.present()?;
    Ok(())
}

/// A log axis from `lo` to `hi` widened to whole powers of ten, so that it always has labels.
fn decades(lo: f64, hi: f64) -> (f64, f64) {
    let lo = 10f64.powf(lo.max(1e-3).log10().floor());
    let hi = 10f64.powf(hi.max(lo * 1.01).log10().ceil());
    (lo, hi)
}

/// A latency axis label without float noise: `0.25`, `1.5`, `30`.
fn ms_label(v: f64) -> String {
    let s = if v >= 10.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    };
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// Colours for the lines of the time chart when a scenario has several (one per run).
const PALETTE: [(RGBColor, &str); 10] = [
    (RGBColor(31, 119, 180), "blue"),
    (RGBColor(214, 39, 40), "red"),
    (RGBColor(44, 160, 44), "green"),
    (RGBColor(255, 127, 14), "orange"),
    (RGBColor(148, 103, 189), "purple"),
    (RGBColor(23, 190, 207), "cyan"),
    (RGBColor(140, 86, 75), "brown"),
    (RGBColor(227, 119, 194), "pink"),
    (RGBColor(188, 189, 34), "olive"),
    (RGBColor(60, 60, 60), "dark grey"),
];

/// The runs the time chart shows: every run when there are few, else each scenario at its
/// highest connection count.
fn time_runs(outcomes: &[Outcome]) -> Vec<&Outcome> {
    if outcomes.len() <= PALETTE.len() {
        return outcomes.iter().collect();
    }
    Kind::ALL
        .into_iter()
        .filter_map(|k| {
            outcomes
                .iter()
                .filter(|o| o.kind == k)
                .max_by_key(|o| o.conns)
        })
        .collect()
}

/// `load-p99-time.png`: x = seconds into the measured time, y = p99 of the answers that
/// arrived in each second (log scale); a second without any answer breaks the line and is
/// marked by a cross at the top. Returns the lines as `label = colour` for the Markdown.
pub fn draw_p99_by_second(
    path: &Path,
    title: &str,
    outcomes: &[Outcome],
    text: bool,
) -> anyhow::Result<Vec<String>> {
    let runs = time_runs(outcomes);
    let one_per_kind = runs
        .iter()
        .all(|o| runs.iter().filter(|p| p.kind == o.kind).count() == 1);
    let mut lines = Vec::new();
    let mut silent = Vec::new();
    for (i, o) in runs.iter().enumerate() {
        let (col, name) = if one_per_kind {
            let name = COLORS
                .iter()
                .find(|(k, _, _)| *k == o.kind)
                .map_or("black", |(_, _, n)| *n);
            (color(o.kind), name)
        } else {
            PALETTE[i % PALETTE.len()]
        };
        let w = o.window.as_secs_f64();
        // Consecutive seconds with answers, each a segment of the line; the seconds without
        // any answer apart (a stall of a second or more: crosses at the top).
        let mut segments: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
        for (j, win) in o.windows.iter().enumerate() {
            let x = (j as f64 + 0.5) * w;
            match win.p99_ms() {
                Some(v) if v > 0.0 => {
                    if let Some(seg) = segments.last_mut() {
                        seg.push((x, v));
                    }
                }
                _ => {
                    silent.push((x, col));
                    segments.push(Vec::new());
                }
            }
        }
        segments.retain(|s| !s.is_empty());
        lines.push((
            format!("{} @{}", o.kind.name(), o.conns),
            col,
            name,
            segments,
        ));
    }
    let points = || {
        lines
            .iter()
            .flat_map(|(_, _, _, segs)| segs.iter().flatten().copied())
    };
    let xmax = runs
        .iter()
        .map(|o| o.windows.len() as f64 * o.window.as_secs_f64())
        .fold(1.0, f64::max)
        .ceil();
    let lo = points().map(|(_, y)| y).fold(f64::MAX, f64::min);
    let hi = points().map(|(_, y)| y).fold(0.01, f64::max);
    let lo = if lo == f64::MAX { 0.01 } else { lo };

    let root = BitMapBackend::new(path, (1100, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = if text {
        root.titled(title, ("sans-serif", 22))?
    } else {
        root
    };
    let mut b = ChartBuilder::on(&root);
    b.margin(20);
    if text {
        b.caption(
            "p99 latency of each second (ms, log scale)",
            ("sans-serif", 20),
        )
        .x_label_area_size(45)
        .y_label_area_size(75);
    }
    let (ylo, yhi) = decades(lo, hi);
    let mut c = b.build_cartesian_2d(0f64..xmax, (ylo..yhi).log_scale())?;
    if text {
        c.configure_mesh()
            .x_labels((xmax as usize).min(20) + 1)
            .x_label_formatter(&|v| {
                if (v - v.round()).abs() < 1e-6 {
                    format!("{v:.0}")
                } else {
                    String::new()
                }
            })
            .y_labels(30)
            .max_light_lines(1)
            .y_label_formatter(&|v| ms_label(*v))
            .x_desc("seconds into the measured time")
            .y_desc("p99 ms")
            .draw()?;
    }
    for (label, col, _, segs) in &lines {
        let col = *col;
        for (n, seg) in segs.iter().enumerate() {
            let s = c.draw_series(LineSeries::new(seg.clone(), col.stroke_width(2)))?;
            if text && n == 0 {
                s.label(label.as_str()).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], col.stroke_width(2))
                });
            }
            c.draw_series(seg.iter().map(|p| Circle::new(*p, 3, col.filled())))?;
        }
    }
    let top = yhi / 1.3;
    c.draw_series(
        silent
            .iter()
            .map(|(x, col)| Cross::new((*x, top), 6, col.stroke_width(2))),
    )?;
    if text {
        c.configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 15))
            .draw()?;
    }
    root.present()?;
    Ok(lines
        .into_iter()
        .map(|(label, _, name, _)| format!("{label} = {name}"))
        .collect())
}

/// `load-soak.png`: left, the server's RSS at each sample (one line per replica) with the
/// ±10 % band around the warm point; right, the p99 of each window (log scale). x = seconds
/// since the load started.
pub fn draw_soak(path: &Path, title: &str, soak: &Soak, text: bool) -> anyhow::Result<()> {
    let replicas = soak.replicas();
    let rss: Vec<Vec<(f64, f64)>> = (0..replicas)
        .map(|r| {
            soak.samples
                .iter()
                .filter_map(|s| {
                    s.rss_kib
                        .get(r)
                        .copied()
                        .flatten()
                        .map(|k| (s.t_s, k as f64 / 1024.0))
                })
                .collect()
        })
        .collect();
    let every = soak.every.as_secs_f64();
    let p99: Vec<(f64, f64)> = soak
        .outcome
        .windows
        .iter()
        .enumerate()
        .filter_map(|(i, w)| w.p99_ms().map(|v| ((i as f64 + 1.0) * every, v)))
        .collect();
    let xmax = soak.duration.as_secs_f64().max(1.0) * 1.02;
    let verdicts: Vec<_> = (0..replicas).map(|r| soak.verdict(r)).collect();
    let bands: Vec<Option<(f64, f64)>> = verdicts
        .iter()
        .map(|v| {
            v.as_ref().map(|v| {
                let warm = v.warm.1 as f64 / 1024.0;
                (warm * (1.0 - TOLERANCE), warm * (1.0 + TOLERANCE))
            })
        })
        .collect();
    let rss_hi = rss
        .iter()
        .flatten()
        .map(|(_, y)| *y)
        .chain(bands.iter().flatten().map(|b| b.1))
        .fold(1.0, f64::max);
    let col = |r: usize| PALETTE[r % PALETTE.len()].0;

    let root = BitMapBackend::new(path, (1500, 650)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = if text {
        root.titled(title, ("sans-serif", 22))?
    } else {
        root
    };
    let (left, right) = root.split_horizontally(750);
    {
        let mut b = ChartBuilder::on(&left);
        b.margin(20);
        if text {
            let caption = if replicas > 1 {
                "server RSS per replica (MiB; bands: ±10 % of each warm point)"
            } else {
                "server RSS (MiB; band: ±10 % of the warm point)"
            };
            b.caption(caption, ("sans-serif", 20))
                .x_label_area_size(45)
                .y_label_area_size(75);
        }
        let mut c = b.build_cartesian_2d(0f64..xmax, 0f64..rss_hi * 1.1)?;
        if text {
            c.configure_mesh()
                .max_light_lines(1)
                .x_label_formatter(&|v| format!("{v:.0}"))
                .x_desc("seconds since the load started")
                .y_desc("RSS MiB")
                .y_label_formatter(&|v| format!("{v:.0}"))
                .draw()?;
        }
        for (r, band) in bands.iter().enumerate() {
            if let Some((lo, hi)) = band {
                let shade = if replicas > 1 {
                    col(r).mix(0.12)
                } else {
                    RGBColor(200, 200, 200).mix(0.4)
                };
                c.draw_series(std::iter::once(Rectangle::new(
                    [(0.0, *lo), (xmax, *hi)],
                    shade.filled(),
                )))?;
            }
        }
        let red = RGBColor(214, 39, 40);
        for (r, pts) in rss.iter().enumerate() {
            let s = c.draw_series(LineSeries::new(pts.clone(), col(r).stroke_width(2)))?;
            if text && replicas > 1 {
                let cr = col(r);
                s.label(format!("replica {}", r + 1)).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], cr.stroke_width(2))
                });
            }
            c.draw_series(pts.iter().map(|p| Circle::new(*p, 3, col(r).filled())))?;
            if let Some(Some(v)) = verdicts.get(r) {
                for (t, k) in [v.warm, v.last] {
                    c.draw_series(std::iter::once(Circle::new(
                        (t, k as f64 / 1024.0),
                        6,
                        red.stroke_width(2),
                    )))?;
                }
            }
        }
        if text && replicas > 1 {
            c.configure_series_labels()
                .position(SeriesLabelPosition::LowerRight)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font(("sans-serif", 15))
                .draw()?;
        }
    }
    {
        let blue = col(0);
        let mut b = ChartBuilder::on(&right);
        b.margin(20);
        if text {
            b.caption(
                format!("p99 of each {every:.0}-s window (ms, log scale)"),
                ("sans-serif", 20),
            )
            .x_label_area_size(45)
            .y_label_area_size(75);
        }
        let lo = p99.iter().map(|(_, y)| *y).fold(f64::MAX, f64::min);
        let hi = p99.iter().map(|(_, y)| *y).fold(0.01, f64::max);
        let (ylo, yhi) = decades(if lo == f64::MAX { 0.01 } else { lo }, hi);
        let mut c = b.build_cartesian_2d(0f64..xmax, (ylo..yhi).log_scale())?;
        if text {
            c.configure_mesh()
                .max_light_lines(1)
                .y_labels(30)
                .x_label_formatter(&|v| format!("{v:.0}"))
                .x_desc("seconds since the load started")
                .y_desc("p99 ms")
                .y_label_formatter(&|v| ms_label(*v))
                .draw()?;
        }
        c.draw_series(LineSeries::new(p99.clone(), blue.stroke_width(2)))?;
        c.draw_series(p99.iter().map(|p| Circle::new(*p, 3, blue.filled())))?;
    }
    root.present()?;
    Ok(())
}
