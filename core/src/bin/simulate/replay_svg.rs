//! The replay's plot: quality against the share of GPT-4 calls, one point per λ per strategy,
//! beside the fixed choices, their random mixes (a line), the oracle and RouteLLM's published
//! point.

use std::fmt::Write as _;

use super::{Bench, Curve, Point};

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

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A round step giving about `target` ticks over `range`.
fn tick(range: f64, target: f64) -> f64 {
    let raw = (range / target).max(1e-9);
    let magnitude = 10f64.powf(raw.log10().floor());
    let nice = [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .find(|n| n * magnitude >= raw)
        .unwrap_or(10.0);
    nice * magnitude
}

impl Plot<'_> {
    pub fn svg(&self) -> String {
        let (width, height) = (980.0, 600.0);
        let (left, right, top, bottom) = (80.0, 330.0, 60.0, 60.0);
        let (plot_w, plot_h) = (width - left - right, height - top - bottom);
        let mut all: Vec<f64> = vec![self.strong.quality, self.weak.quality, self.oracle.quality];
        all.extend(
            self.curves
                .iter()
                .flat_map(|c| c.points.iter().map(|(_, p)| p.quality)),
        );
        all.extend(self.published.iter().map(|(p, _)| p.quality));
        let lo = all.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = all.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let step = tick(hi - lo, 8.0);
        let (y0, y1) = ((lo / step).floor() * step, (hi / step).ceil() * step);
        let px = |share: f64| left + share * plot_w;
        let py = |q: f64| top + plot_h - (q - y0) / (y1 - y0).max(1e-9) * plot_h;

        let mut o = String::new();
        let _ = writeln!(
            o,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="Helvetica, Arial, DejaVu Sans, sans-serif" font-size="12">"#
        );
        let _ = writeln!(
            o,
            r#"<rect width="{width}" height="{height}" fill="white"/>"#
        );
        let unit = if self.bench.scores {
            "MT-Bench score (GPT-4 judge, 1–10)"
        } else {
            "accuracy (%)"
        };
        let _ = writeln!(
            o,
            r#"<text x="{:.1}" y="24" font-size="16" font-weight="bold" text-anchor="middle">Replay of RouteLLM's {} judgements: GPT-4 vs Mixtral-8x7B</text>"#,
            left + plot_w / 2.0,
            escape(&self.bench.name)
        );
        let _ = writeln!(
            o,
            r##"<text x="{:.1}" y="42" text-anchor="middle" fill="#444">{} prompts in file order; one point per cost weight λ (mean of {} runs); LinUCB alpha {}</text>"##,
            left + plot_w / 2.0,
            self.bench.prompts.len(),
            self.runs,
            self.alpha
        );
        let mut y = y0;
        while y <= y1 + step * 1e-9 {
            let yy = py(y);
            let _ = writeln!(
                o,
                r##"<line x1="{left}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#e5e5e5"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
                left + plot_w,
                left - 6.0,
                yy + 4.0,
                (y * 1000.0).round() / 1000.0
            );
            y += step;
        }
        for i in 0..=10 {
            let share = f64::from(i) / 10.0;
            let _ = writeln!(
                o,
                r##"<line x1="{x:.1}" y1="{b:.1}" x2="{x:.1}" y2="{:.1}" stroke="#333"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
                top + plot_h + 5.0,
                top + plot_h + 20.0,
                i * 10,
                x = px(share),
                b = top + plot_h
            );
        }
        let _ = writeln!(
            o,
            r##"<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#333"/><text x="{:.1}" y="{:.1}" text-anchor="middle">share of prompts sent to GPT-4 (%) — cost ≈ this share of always-GPT-4's</text><text transform="translate(22 {:.1}) rotate(-90)" text-anchor="middle">{unit}</text>"##,
            left + plot_w / 2.0,
            height - 18.0,
            top + plot_h / 2.0
        );
        // Random mixes of the two models: the line between them.
        let _ = writeln!(
            o,
            r##"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#888" stroke-width="2" stroke-dasharray="6 4"/>"##,
            px(0.0),
            py(self.weak.quality),
            px(1.0),
            py(self.strong.quality)
        );
        let line: Vec<String> = (self.deciles.iter())
            .map(|p| format!("{:.1},{:.1}", px(p.strong_share), py(p.quality)))
            .collect();
        let _ = writeln!(
            o,
            r##"<polyline fill="none" stroke="#2ca02c" stroke-width="1.5" stroke-dasharray="2 3" points="{}"/>"##,
            line.join(" ")
        );
        for (c, color) in self.curves.iter().zip(COLORS) {
            let mut pts: Vec<Point> = c.points.iter().map(|(_, p)| *p).collect();
            pts.sort_by(|a, b| a.strong_share.total_cmp(&b.strong_share));
            let line: Vec<String> = pts
                .iter()
                .map(|p| format!("{:.1},{:.1}", px(p.strong_share), py(p.quality)))
                .collect();
            let _ = writeln!(
                o,
                r#"<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{}"/>"#,
                line.join(" ")
            );
            for p in &pts {
                let _ = writeln!(
                    o,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{color}"/>"#,
                    px(p.strong_share),
                    py(p.quality)
                );
            }
        }
        let square = |o: &mut String, p: Point, fill: &str| {
            let _ = writeln!(
                o,
                r#"<rect x="{:.1}" y="{:.1}" width="10" height="10" fill="{fill}"/>"#,
                px(p.strong_share) - 5.0,
                py(p.quality) - 5.0
            );
        };
        square(&mut o, self.strong, "#555");
        square(&mut o, self.weak, "#555");
        let star = |o: &mut String, x: f64, y: f64, fill: &str| {
            let _ = writeln!(
                o,
                r#"<polygon points="{:.1},{:.1} {:.1},{:.1} {:.1},{:.1} {:.1},{:.1}" fill="{fill}"/>"#,
                x,
                y - 7.0,
                x + 7.0,
                y,
                x,
                y + 7.0,
                x - 7.0,
                y
            );
        };
        star(
            &mut o,
            px(self.oracle.strong_share),
            py(self.oracle.quality),
            "#000",
        );
        if let Some((p, _)) = self.published {
            let (x, y) = (px(p.strong_share), py(p.quality));
            let _ = writeln!(
                o,
                r##"<circle cx="{x:.1}" cy="{y:.1}" r="7" fill="none" stroke="#d62728" stroke-width="2.5"/>"##
            );
        }
        self.legend(&mut o, left + plot_w + 20.0, top + 10.0);
        o.push_str("</svg>\n");
        o
    }

    fn legend(&self, o: &mut String, lx: f64, mut ly: f64) {
        let text = |o: &mut String, ly: f64, label: &str| {
            let _ = writeln!(
                o,
                r#"<text x="{:.1}" y="{ly:.1}">{}</text>"#,
                lx + 28.0,
                escape(label)
            );
        };
        for (c, color) in self.curves.iter().zip(COLORS) {
            let _ = writeln!(
                o,
                r#"<line x1="{lx}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{color}" stroke-width="2"/><circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{color}"/>"#,
                ly - 4.0,
                lx + 20.0,
                ly - 4.0,
                lx + 10.0,
                ly - 4.0
            );
            text(o, ly, &format!("{} (λ sweep)", c.name));
            ly += 20.0;
        }
        let _ = writeln!(
            o,
            r##"<line x1="{lx}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#888" stroke-width="2" stroke-dasharray="6 4"/>"##,
            ly - 4.0,
            lx + 20.0,
            ly - 4.0
        );
        text(o, ly, "random mixes of the two");
        ly += 20.0;
        let _ = writeln!(
            o,
            r##"<line x1="{lx}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#2ca02c" stroke-width="2" stroke-dasharray="2 3"/>"##,
            ly - 4.0,
            lx + 20.0,
            ly - 4.0
        );
        text(o, ly, "hindsight: GPT-4 for the length deciles");
        ly += 16.0;
        text(o, ly, "where it gains most (length-only ceiling)");
        ly += 20.0;
        let _ = writeln!(
            o,
            r##"<rect x="{:.1}" y="{:.1}" width="10" height="10" fill="#555"/>"##,
            lx + 5.0,
            ly - 9.0
        );
        text(
            o,
            ly,
            &format!(
                "always GPT-4 {:.2} / always Mixtral {:.2}",
                self.strong.quality, self.weak.quality
            ),
        );
        ly += 20.0;
        let _ = writeln!(
            o,
            r##"<polygon points="{:.1},{:.1} {:.1},{:.1} {:.1},{:.1} {:.1},{:.1}" fill="#000"/>"##,
            lx + 10.0,
            ly - 11.0,
            lx + 17.0,
            ly - 4.0,
            lx + 10.0,
            ly + 3.0,
            lx + 3.0,
            ly - 4.0
        );
        text(
            o,
            ly,
            &format!(
                "per-prompt oracle {:.2} at {:.0}%",
                self.oracle.quality,
                100.0 * self.oracle.strong_share
            ),
        );
        ly += 20.0;
        match self.published {
            Some((p, label)) => {
                let _ = writeln!(
                    o,
                    r##"<circle cx="{:.1}" cy="{:.1}" r="7" fill="none" stroke="#d62728" stroke-width="2.5"/>"##,
                    lx + 10.0,
                    ly - 4.0
                );
                text(o, ly, label);
                ly += 16.0;
                text(
                    o,
                    ly,
                    &format!(
                        "their figures: {:.2}% GPT-4, {}",
                        100.0 * p.strong_share,
                        p.quality
                    ),
                );
            }
            None => text(o, ly, "no published RouteLLM point for this file"),
        }
    }
}
