//! The replay's plot: quality against the share of GPT-4 calls, one point per λ per strategy,
//! beside the fixed choices, their random mixes (a line), the oracle and RouteLLM's published
//! point.

use std::fmt::Write as _;

use super::{Bench, Curve, Point};
use crate::svg::{tick_step, ticks, Frame, Legend, NICE_1_2_25_5};

const COLORS: [&str; 3] = ["#1f77b4", "#ff7f0e", "#9467bd"];

pub struct Plot<'a> {
    pub bench: &'a Bench,
    pub curves: &'a [Curve],
    pub strong: Point,
    pub weak: Point,
    pub oracle: Point,
    /// The best length-only router in hindsight (`length_deciles`).
    pub deciles: &'a [Point],
    pub published: Option<(Point, &'static str)>,
    pub runs: u64,
    pub alpha: f64,
}

impl Plot<'_> {
    pub fn svg(&self) -> String {
        let (frame, step) = self.frame();
        let mut o = String::new();
        frame.open(&mut o);
        let title = format!(
            "Replay of RouteLLM's {} judgements: GPT-4 vs Mixtral-8x7B",
            self.bench.name
        );
        let subtitle = format!(
            "{} prompts in file order; one point per cost weight λ (mean of {} runs); LinUCB alpha {}",
            self.bench.prompts.len(),
            self.runs,
            self.alpha
        );
        frame.title(&mut o, &title, &subtitle);
        self.axes(&mut o, &frame, step);
        self.marks(&mut o, &frame);
        self.legend(&mut o, frame.legend());
        o.push_str("</svg>\n");
        o
    }

    /// x: the share sent to GPT-4, 0 to 1; y: round bounds around every quality drawn.
    /// Returns the frame and its y tick step.
    fn frame(&self) -> (Frame, f64) {
        let mut all: Vec<f64> = vec![self.strong.quality, self.weak.quality, self.oracle.quality];
        all.extend(
            self.curves
                .iter()
                .flat_map(|c| c.points.iter().map(|(_, p)| p.quality)),
        );
        all.extend(self.published.iter().map(|(p, _)| p.quality));
        let lo = all.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = all.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let step = tick_step(hi - lo, 8.0, NICE_1_2_25_5);
        let y = ((lo / step).floor() * step, (hi / step).ceil() * step);
        let frame = Frame::new((980.0, 600.0), (80.0, 330.0, 60.0, 60.0), (0.0, 1.0), y);
        (frame, step)
    }

    /// Grid, ticks every 10 %, the plot's border and the axes' names.
    fn axes(&self, o: &mut String, frame: &Frame, step: f64) {
        for y in ticks(frame.y.0, frame.y.1, step) {
            frame.y_tick(o, y, (y * 1000.0).round() / 1000.0);
        }
        for i in 0..=10 {
            frame.x_tick(o, f64::from(i) / 10.0, i * 10);
        }
        let unit = if self.bench.scores {
            "MT-Bench score (GPT-4 judge, 1–10)"
        } else {
            "accuracy (%)"
        };
        let _ = writeln!(
            o,
            r##"<rect x="{}" y="{}" width="{}" height="{}" fill="none" stroke="#333"/>{}{}"##,
            frame.left,
            frame.top,
            frame.plot_w,
            frame.plot_h,
            frame.x_label(
                "share of prompts sent to GPT-4 (%) — cost ≈ this share of always-GPT-4's"
            ),
            frame.y_label(unit)
        );
    }

    /// The mixes' line, the hindsight curve, the strategies' λ sweeps, the fixed choices, the
    /// oracle and the published point.
    fn marks(&self, o: &mut String, frame: &Frame) {
        let _ = writeln!(
            o,
            r##"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#888" stroke-width="2" stroke-dasharray="6 4"/>"##,
            frame.px(0.0),
            frame.py(self.weak.quality),
            frame.px(1.0),
            frame.py(self.strong.quality)
        );
        let at = |p: &Point| (p.strong_share, p.quality);
        let _ = writeln!(
            o,
            r##"<polyline fill="none" stroke="#2ca02c" stroke-width="1.5" stroke-dasharray="2 3" points="{}"/>"##,
            frame.points(self.deciles.iter().map(at))
        );
        for (c, color) in self.curves.iter().zip(COLORS) {
            let mut pts: Vec<Point> = c.points.iter().map(|(_, p)| *p).collect();
            pts.sort_by(|a, b| a.strong_share.total_cmp(&b.strong_share));
            let _ = writeln!(
                o,
                r#"<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{}"/>"#,
                frame.points(pts.iter().map(at))
            );
            for p in &pts {
                let _ = writeln!(
                    o,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{color}"/>"#,
                    frame.px(p.strong_share),
                    frame.py(p.quality)
                );
            }
        }
        for p in [self.strong, self.weak] {
            let _ = writeln!(
                o,
                r##"<rect x="{:.1}" y="{:.1}" width="10" height="10" fill="#555"/>"##,
                frame.px(p.strong_share) - 5.0,
                frame.py(p.quality) - 5.0
            );
        }
        let (x, y) = (
            frame.px(self.oracle.strong_share),
            frame.py(self.oracle.quality),
        );
        diamond(o, x, y);
        if let Some((p, _)) = self.published {
            let (x, y) = (frame.px(p.strong_share), frame.py(p.quality));
            published(o, x, y);
        }
    }

    fn legend(&self, o: &mut String, mut l: Legend) {
        // A marker's row: the marker and the text on separate lines of the SVG.
        let text = |o: &mut String, l: &Legend, label: &str| {
            let _ = writeln!(o, "{}", l.text(28.0, label));
        };
        for (c, color) in self.curves.iter().zip(COLORS) {
            let _ = writeln!(
                o,
                r#"{}<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{color}"/>"#,
                l.line(20.0, color, ""),
                l.x + 10.0,
                l.y - 4.0
            );
            text(o, &l, &format!("{} (λ sweep)", c.name));
            l.next(20.0);
        }
        let _ = writeln!(o, "{}", l.line(20.0, "#888", "6 4"));
        text(o, &l, "random mixes of the two");
        l.next(20.0);
        let _ = writeln!(o, "{}", l.line(20.0, "#2ca02c", "2 3"));
        text(o, &l, "hindsight: GPT-4 for the length deciles");
        l.next(16.0);
        text(o, &l, "where it gains most (length-only ceiling)");
        l.next(20.0);
        let _ = writeln!(
            o,
            r##"<rect x="{:.1}" y="{:.1}" width="10" height="10" fill="#555"/>"##,
            l.x + 5.0,
            l.y - 9.0
        );
        let fixed = format!(
            "always GPT-4 {:.2} / always Mixtral {:.2}",
            self.strong.quality, self.weak.quality
        );
        text(o, &l, &fixed);
        l.next(20.0);
        diamond(o, l.x + 10.0, l.y - 4.0);
        let oracle = format!(
            "per-prompt oracle {:.2} at {:.0}%",
            self.oracle.quality,
            100.0 * self.oracle.strong_share
        );
        text(o, &l, &oracle);
        l.next(20.0);
        match self.published {
            Some((p, label)) => {
                published(o, l.x + 10.0, l.y - 4.0);
                text(o, &l, label);
                l.next(16.0);
                let figures = format!(
                    "their figures: {:.2}% GPT-4, {}",
                    100.0 * p.strong_share,
                    p.quality
                );
                text(o, &l, &figures);
            }
            None => text(o, &l, "no published RouteLLM point for this file"),
        }
    }
}

/// The oracle's marker, centred on `(x, y)`.
fn diamond(o: &mut String, x: f64, y: f64) {
    let _ = writeln!(
        o,
        r##"<polygon points="{:.1},{:.1} {:.1},{:.1} {:.1},{:.1} {:.1},{:.1}" fill="#000"/>"##,
        x,
        y - 7.0,
        x + 7.0,
        y,
        x,
        y + 7.0,
        x - 7.0,
        y
    );
}

/// RouteLLM's published point: a red ring.
fn published(o: &mut String, x: f64, y: f64) {
    let _ = writeln!(
        o,
        r##"<circle cx="{x:.1}" cy="{y:.1}" r="7" fill="none" stroke="#d62728" stroke-width="2.5"/>"##
    );
}
