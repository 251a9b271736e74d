//! Charts for the pages (bars, a Lorenz curve), drawn by plotters into SVG on the server (no
//! script, no inline style), each beside a table or a sentence that says the same in words.

use plotters::prelude::*;

/// The colour of bars and lines (the stylesheet's accent).
const ACCENT: RGBColor = RGBColor(0x1d, 0x4e, 0x89);

/// A horizontal bar chart of labelled values, as an SVG document; `None` when plotters fails
/// (the page then shows the table alone).
pub fn bars(rows: &[(String, f64)]) -> Option<String> {
    bars_with_intervals(rows, &[])
}

/// [`bars`], with each row's interval (low, high) drawn across its bar when given.
pub fn bars_with_intervals(rows: &[(String, f64)], intervals: &[(f64, f64)]) -> Option<String> {
    let n = rows.len().max(1);
    let max = rows
        .iter()
        .map(|(_, v)| *v)
        .chain(intervals.iter().map(|(_, high)| *high))
        .fold(0.0_f64, f64::max)
        .max(1.0);
    let height = 40 + 34 * n as u32;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (480, height)).into_drawing_area();
        root.fill(&WHITE).ok()?;
        let mut chart = ChartBuilder::on(&root)
            .margin(8)
            .x_label_area_size(24)
            .y_label_area_size(150)
            .build_cartesian_2d(0.0..max * 1.1, (0..n).into_segmented())
            .ok()?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .x_labels(5)
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) => rows.get(*i).map(|r| r.0.clone()).unwrap_or_default(),
                _ => String::new(),
            })
            .label_style(("sans-serif", 13))
            .draw()
            .ok()?;
        chart
            .draw_series(rows.iter().enumerate().map(|(i, (_, value))| {
                let mut bar = Rectangle::new(
                    [
                        (0.0, SegmentValue::Exact(i)),
                        (*value, SegmentValue::Exact(i + 1)),
                    ],
                    ACCENT.filled(),
                );
                bar.set_margin(6, 6, 0, 0);
                bar
            }))
            .ok()?;
        chart
            .draw_series(intervals.iter().enumerate().map(|(i, (low, high))| {
                PathElement::new(
                    [
                        (low.max(0.0), SegmentValue::CenterOf(i)),
                        (*high, SegmentValue::CenterOf(i)),
                    ],
                    BLACK.stroke_width(2),
                )
            }))
            .ok()?;
        root.present().ok()?;
    }
    Some(svg)
}

/// A Lorenz curve (cumulative share of exposure over the cumulative share of items, least
/// exposed first) against the diagonal of perfect equality, as an SVG document.
pub fn lorenz(curve: &[f64]) -> Option<String> {
    if curve.len() < 2 {
        return None;
    }
    let steps = (curve.len() - 1) as f64;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (360, 300)).into_drawing_area();
        root.fill(&WHITE).ok()?;
        let mut chart = ChartBuilder::on(&root)
            .margin(10)
            .x_label_area_size(36)
            .y_label_area_size(44)
            .build_cartesian_2d(0.0..1.0_f64, 0.0..1.0_f64)
            .ok()?;
        chart
            .configure_mesh()
            .x_desc("share of items")
            .y_desc("share of exposure")
            .x_labels(5)
            .y_labels(5)
            .label_style(("sans-serif", 12))
            .draw()
            .ok()?;
        chart
            .draw_series(LineSeries::new([(0.0, 0.0), (1.0, 1.0)], BLACK.mix(0.4)))
            .ok()?;
        chart
            .draw_series(LineSeries::new(
                curve
                    .iter()
                    .enumerate()
                    .map(|(i, y)| (i as f64 / steps, *y)),
                ACCENT.stroke_width(2),
            ))
            .ok()?;
        root.present().ok()?;
    }
    Some(svg)
}
