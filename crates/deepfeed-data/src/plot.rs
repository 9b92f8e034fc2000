//! PNG charts drawn with plotters: the training loss curve (`loss.png`) and histograms
//! (`deepfeed stats`). Text needs a font file: the usual system fonts are tried (DejaVu,
//! WenQuanYi, Noto CJK); without one the chart is skipped and the caller says so.
use std::path::Path;
use std::sync::OnceLock;

use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

use crate::error::{DataError, Result};

const FONT_CANDIDATES: [&str; 5] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
];

/// Registers the first font found as "sans-serif"; false when there is none.
fn font_ready() -> bool {
    static READY: OnceLock<bool> = OnceLock::new();
    *READY.get_or_init(|| {
        for path in FONT_CANDIDATES {
            if let Ok(bytes) = std::fs::read(path) {
                // plotters keeps fonts for the life of the program
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                    return true;
                }
            }
        }
        false
    })
}

/// Draws `train` (step, loss) and `val` (step, loss) into `path`; Ok(false) when no font exists.
pub fn write_loss_png(path: &Path, train: &[(usize, f64)], val: &[(usize, f64)]) -> Result<bool> {
    if train.is_empty() || !font_ready() {
        return Ok(false);
    }
    let tmp = path.with_extension("tmp.png");
    let draw = || -> std::result::Result<(), Box<dyn std::error::Error>> {
        let root = BitMapBackend::new(&tmp, (900, 500)).into_drawing_area();
        root.fill(&WHITE)?;
        let max_step = train.iter().chain(val).map(|p| p.0).max().unwrap_or(1).max(1);
        let losses = train.iter().chain(val).map(|p| p.1).filter(|l| l.is_finite());
        let (lo, hi) = losses.fold((f64::MAX, f64::MIN), |(a, b), l| (a.min(l), b.max(l)));
        let pad = ((hi - lo) * 0.05).max(1e-3);
        let mut chart = ChartBuilder::on(&root)
            .caption("training loss", ("sans-serif", 24))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0usize..max_step, (lo - pad)..(hi + pad))?;
        chart.configure_mesh().x_desc("step").y_desc("loss").draw()?;
        chart.draw_series(LineSeries::new(train.iter().copied(), &BLUE))?.label("train").legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
        if !val.is_empty() {
            chart
                .draw_series(LineSeries::new(val.iter().copied(), RED.stroke_width(2)))?
                .label("validation")
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
        }
        chart.configure_series_labels().border_style(BLACK).background_style(WHITE.mix(0.8)).draw()?;
        root.present()?;
        Ok(())
    };
    draw().map_err(|e| DataError::io(path, std::io::Error::other(e.to_string())))?;
    std::fs::rename(&tmp, path).map_err(|e| DataError::io(path, e))?;
    Ok(true)
}

/// Draws a histogram of `values` in `bins` equal-width bins into `path`; Ok(false) when there is
/// no font (or no value).
pub fn write_histogram_png(path: &Path, title: &str, x_label: &str, values: &[usize], bins: usize) -> Result<bool> {
    if values.is_empty() || !font_ready() {
        return Ok(false);
    }
    let max = *values.iter().max().unwrap_or(&1);
    let width = (max / bins.max(1)).max(1) + 1;
    let mut counts = vec![0usize; max / width + 1];
    for &v in values {
        counts[v / width] += 1;
    }
    let top = *counts.iter().max().unwrap_or(&1);
    let tmp = path.with_extension("tmp.png");
    let draw = || -> std::result::Result<(), Box<dyn std::error::Error>> {
        let root = BitMapBackend::new(&tmp, (900, 500)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 24))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0usize..counts.len() * width, 0usize..top + top / 10 + 1)?;
        chart.configure_mesh().x_desc(x_label).y_desc("records").draw()?;
        chart.draw_series(counts.iter().enumerate().map(|(i, &c)| Rectangle::new([(i * width, 0), ((i + 1) * width, c)], BLUE.mix(0.6).filled())))?;
        root.present()?;
        Ok(())
    };
    draw().map_err(|e| DataError::io(path, std::io::Error::other(e.to_string())))?;
    std::fs::rename(&tmp, path).map_err(|e| DataError::io(path, e))?;
    Ok(true)
}
