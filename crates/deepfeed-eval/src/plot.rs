//! The report's PNG charts (plotters): base-vs-tuned bars per metric and the latency histogram.
//! Chart text is ASCII; a CJK font is preferred when installed (`fc-list :lang=zh`) so that
//! Chinese task names would render too, DejaVu otherwise; with no font at all the charts are
//! skipped and the report says so.
use std::path::Path;
use std::sync::OnceLock;

use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

use crate::error::{EvalError, Result};

const FAMILY: &str = "deepfeed-eval";
const FONT_CANDIDATES: [&str; 6] = [
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
];

/// Registers the first font found; false when there is none.
pub fn font_ready() -> bool {
    static READY: OnceLock<bool> = OnceLock::new();
    *READY.get_or_init(|| {
        for path in FONT_CANDIDATES {
            if let Ok(bytes) = std::fs::read(path) {
                // plotters keeps fonts for the life of the program
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if register_font(FAMILY, FontStyle::Normal, bytes).is_ok() {
                    return true;
                }
            }
        }
        false
    })
}

fn finish(path: &Path, tmp: &Path, r: std::result::Result<(), Box<dyn std::error::Error>>) -> Result<bool> {
    r.map_err(|e| EvalError::io(path, std::io::Error::other(e.to_string())))?;
    std::fs::rename(tmp, path).map_err(|e| EvalError::io(path, e))?;
    Ok(true)
}

/// One panel per metric: (metric name, base value, tuned value, "lower is better").
pub type MetricBar = (String, Option<f64>, f64, bool);

const BASE: RGBColor = RGBColor(150, 150, 150);
const TUNED: RGBColor = RGBColor(31, 119, 180);

/// Base-vs-tuned bars, one small panel per metric; Ok(false) without a font or metric.
pub fn write_metric_bars(path: &Path, metrics: &[MetricBar]) -> Result<bool> {
    if metrics.is_empty() || !font_ready() {
        return Ok(false);
    }
    let tmp = path.with_extension("tmp.png");
    let draw = || -> std::result::Result<(), Box<dyn std::error::Error>> {
        let width = (220 * metrics.len()).max(440) as u32;
        let root = BitMapBackend::new(&tmp, (width, 360)).into_drawing_area();
        root.fill(&WHITE)?;
        let (title, body) = root.split_vertically(40);
        title.draw(&Text::new("base (grey) vs tuned (blue)", (10, 10), (FAMILY, 22).into_font()))?;
        for (area, (name, base, tuned, lower_better)) in body.split_evenly((1, metrics.len())).iter().zip(metrics) {
            let top = base.unwrap_or(0.0).max(*tuned).max(1e-9) * 1.25;
            let better = if *lower_better { "lower is better" } else { "higher is better" };
            let mut chart = ChartBuilder::on(area).caption(name, (FAMILY, 16)).margin(10).y_label_area_size(45).x_label_area_size(25).build_cartesian_2d(0f64..2f64, 0f64..top)?;
            chart.configure_mesh().disable_x_mesh().x_labels(0).y_labels(5).x_desc(better).label_style((FAMILY, 12)).draw()?;
            let bars = [(0.0, *base, BASE, "base"), (1.0, Some(*tuned), TUNED, "tuned")];
            for (x, v, color, label) in bars {
                let Some(v) = v else { continue };
                chart.draw_series(std::iter::once(Rectangle::new([(x + 0.15, 0.0), (x + 0.85, v)], color.filled())))?;
                chart.draw_series(std::iter::once(Text::new(format!("{v:.3}"), (x + 0.2, v + top * 0.03), (FAMILY, 13).into_font())))?;
                chart.draw_series(std::iter::once(Text::new(label, (x + 0.3, top * 0.97), (FAMILY, 12).into_font())))?;
            }
        }
        root.present()?;
        Ok(())
    };
    finish(path, &tmp, draw())
}

/// Histogram of end-to-end latencies in ms (tuned, and base when given).
pub fn write_latency_histogram(path: &Path, tuned: &[f64], base: &[f64]) -> Result<bool> {
    if tuned.is_empty() || !font_ready() {
        return Ok(false);
    }
    let max = tuned.iter().chain(base).copied().fold(0.0f64, f64::max).max(1e-3);
    let bins = 20usize;
    let width = max / bins as f64 * 1.0001;
    let count = |v: &[f64]| {
        let mut c = vec![0usize; bins];
        for &x in v {
            c[((x / width) as usize).min(bins - 1)] += 1;
        }
        c
    };
    let (ct, cb) = (count(tuned), count(base));
    let top = ct.iter().chain(&cb).copied().max().unwrap_or(1);
    let tmp = path.with_extension("tmp.png");
    let draw = || -> std::result::Result<(), Box<dyn std::error::Error>> {
        let root = BitMapBackend::new(&tmp, (900, 400)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("end-to-end latency per answer", (FAMILY, 22))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(0f64..width * bins as f64, 0usize..top + 1)?;
        chart.configure_mesh().x_desc("ms").y_desc("answers").label_style((FAMILY, 13)).draw()?;
        for (counts, color, label, shift) in [(&cb, BASE, "base", 0.0), (&ct, TUNED, "tuned", 0.5)] {
            if counts.iter().all(|&c| c == 0) {
                continue;
            }
            let half = if cb.iter().any(|&c| c > 0) { 0.5 } else { 1.0 };
            let shift = if half < 1.0 { shift } else { 0.0 };
            chart
                .draw_series(counts.iter().enumerate().filter(|(_, c)| **c > 0).map(|(i, &c)| {
                    let x0 = (i as f64 + shift) * width;
                    Rectangle::new([(x0, 0), (x0 + width * half, c)], color.mix(0.85).filled())
                }))?
                .label(label)
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 15, y + 5)], color.filled()));
        }
        chart.configure_series_labels().label_font((FAMILY, 14)).border_style(BLACK).background_style(WHITE.mix(0.8)).draw()?;
        root.present()?;
        Ok(())
    };
    finish(path, &tmp, draw())
}
