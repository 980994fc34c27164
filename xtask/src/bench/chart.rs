//! One SVG chart per bench file (issue 19, item 6): for every row of its table, multiproc, Python
//! and the floor side by side on a log axis, free and pinned in two panels. Drawn with plotters'
//! SVG backend.

use std::path::Path;

use anyhow::{anyhow, Result};
use plotters::prelude::*;
use plotters::style::text_anchor;

/// One row of a table: its label and, in nanoseconds, multiproc's, Python's and the floor's mean
/// (none where the run has no such figure).
#[derive(Debug, Clone)]
pub(crate) struct Bars {
    pub(crate) label: String,
    pub(crate) values: [Option<f64>; 3],
}

/// The three figures of a row, in [`Bars::values`]' order, and their colours.
const SERIES: [(&str, RGBColor); 3] = [
    ("multiproc", RGBColor(0x1f, 0x77, 0xb4)),
    ("Python", RGBColor(0xff, 0x7f, 0x0e)),
    ("floor", RGBColor(0x88, 0x88, 0x88)),
];

/// Pixels for the row labels on the left.
const LABEL_WIDTH: u32 = 360;
/// Pixels per panel.
const PANEL_WIDTH: u32 = 430;
/// Pixels per row.
const ROW_HEIGHT: u32 = 44;
/// Pixels above and below the rows (title, legend, axis).
const FRAME_HEIGHT: u32 = 110;

/// Draws `title`'s chart into `path`: one panel per `(name, rows)` of `panels` (free, pinned), the
/// rows' labels taken from the first.
pub(crate) fn render(path: &Path, title: &str, panels: &[(&str, Vec<Bars>)]) -> Result<()> {
    let rows = panels.iter().map(|(_, bars)| bars.len()).max().unwrap_or(0);
    let figures = panels.iter().flat_map(|(_, bars)| bars.iter().flat_map(|b| b.values.iter().flatten()));
    let (lo, hi) = decades(figures.copied()).ok_or_else(|| anyhow!("{title}: no figures to chart"))?;
    let width = LABEL_WIDTH + PANEL_WIDTH * panels.len() as u32;
    let height = FRAME_HEIGHT + ROW_HEIGHT * rows as u32;
    let root = SVGBackend::new(path, (width, height)).into_drawing_area();
    root.fill(&WHITE).map_err(draw)?;
    let root = root.titled(title, ("sans-serif", 18)).map_err(draw)?;
    let (labels, right) = root.split_horizontally(LABEL_WIDTH);
    let panel_areas = right.split_evenly((1, panels.len().max(1)));
    let mut label_rows = None;
    for ((name, bars), area) in panels.iter().zip(&panel_areas) {
        let mut chart = ChartBuilder::on(area)
            .caption(*name, ("sans-serif", 15))
            .margin(8)
            .margin_right(28)
            .x_label_area_size(36)
            .build_cartesian_2d((lo..hi).log_scale(), 0f64..rows as f64)
            .map_err(draw)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(0)
            .y_label_formatter(&|_| String::new())
            .x_labels(8)
            .x_label_formatter(&|v| time(*v))
            .x_desc("time per operation (log scale)")
            .draw()
            .map_err(draw)?;
        for (i, row) in bars.iter().enumerate() {
            // Row 0 at the top; its three bars one under the other.
            let top = (rows - i) as f64 - 0.12;
            for (k, value) in row.values.iter().enumerate() {
                let Some(&value) = value.as_ref() else { continue };
                let y1 = top - k as f64 * 0.26;
                let bar = Rectangle::new([(lo, y1 - 0.22), (value.max(lo), y1)], SERIES[k].1.filled());
                chart.draw_series(std::iter::once(bar)).map_err(draw)?;
            }
        }
        if label_rows.is_none() {
            label_rows = Some((chart.plotting_area().get_pixel_range().1, bars));
        }
    }
    // Row labels beside the first panel's rows, and the legend above them.
    if let Some((pixels, bars)) = label_rows {
        let (top, span) = (pixels.start, (pixels.end - pixels.start) as f64);
        let origin = labels.get_base_pixel().1;
        for (i, row) in bars.iter().enumerate() {
            let y = top - origin + ((i as f64 + 0.5) / rows as f64 * span) as i32;
            let style = ("sans-serif", 13)
                .into_font()
                .color(&BLACK)
                .pos(text_anchor::Pos::new(text_anchor::HPos::Left, text_anchor::VPos::Center));
            labels.draw(&Text::new(shorten(&row.label, 52), (8, y), style)).map_err(draw)?;
        }
        for (k, (name, colour)) in SERIES.iter().enumerate() {
            let x = 8 + 110 * k as i32;
            labels.draw(&Rectangle::new([(x, 12), (x + 14, 26)], colour.filled())).map_err(draw)?;
            labels.draw(&Text::new(*name, (x + 20, 13), ("sans-serif", 13))).map_err(draw)?;
        }
    }
    root.present().map_err(draw)?;
    Ok(())
}

/// The whole decades around the positive figures: `(10^floor(log10 min), 10^ceil(log10 max))`.
fn decades(figures: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let (mut lo, mut hi) = (f64::INFINITY, 0f64);
    for v in figures.filter(|v| v.is_finite() && *v > 0.0) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if hi <= 0.0 {
        return None;
    }
    let (lo, hi) = (10f64.powf(lo.log10().floor()), 10f64.powf(hi.log10().ceil()));
    Some((lo, if hi > lo { hi } else { lo * 10.0 }))
}

/// `label`, cut to `max` characters with an ellipsis.
fn shorten(label: &str, max: usize) -> String {
    if label.chars().count() <= max {
        label.to_owned()
    } else {
        label.chars().take(max - 1).chain(std::iter::once('…')).collect()
    }
}

/// A time in nanoseconds, in the unit that reads best.
fn time(ns: f64) -> String {
    if ns < 1e3 {
        format!("{ns:.0} ns")
    } else if ns < 1e6 {
        format!("{:.0} µs", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.0} ms", ns / 1e6)
    } else {
        format!("{:.0} s", ns / 1e9)
    }
}

/// plotters' drawing errors, as anyhow's.
fn draw<E: std::error::Error + Send + Sync + 'static>(e: DrawingAreaErrorKind<E>) -> anyhow::Error {
    anyhow!("drawing the chart: {e}")
}

#[cfg(test)]
mod test {
    use super::{decades, render, Bars};

    #[test]
    fn a_chart_holds_every_row_and_series() {
        let dir = std::env::temp_dir().join(format!("xtask-chart-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("chart.svg");
        let rows = |scale: f64| {
            vec![
                Bars { label: "start+join".into(), values: [Some(250e3 * scale), Some(5e6), Some(120e3)] },
                Bars { label: "no Python figure".into(), values: [Some(30.0), None, Some(20.0)] },
            ]
        };
        render(&path, "process start", &[("free", rows(1.0)), ("pinned", rows(1.2))]).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        for text in
            ["process start", "start+join", "no Python figure", "free", "pinned", "multiproc", "Python"]
        {
            assert!(svg.contains(text), "the chart lacks {text:?}");
        }
        // Two panels of 3 + 2 bars, the legend's three squares and the background.
        let bars = svg.matches("<rect").count();
        assert!(bars >= 2 * 5 + 3, "{bars} rectangles");
    }

    #[test]
    fn the_axis_spans_whole_decades() {
        assert_eq!(decades([30.0, 5e6].into_iter()), Some((10.0, 1e7)));
        assert_eq!(decades([100.0].into_iter()), Some((100.0, 1000.0)));
        assert_eq!(decades([f64::NAN, 0.0].into_iter()), None);
    }
}
