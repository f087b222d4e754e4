//! What the simulator's SVG plots share: escaping, round tick steps, and a frame that maps data
//! to pixels and draws the grid, ticks, axis labels, title and legend rows.
//!
//! Number formats (`{}` or `{:.1}`) follow what each plot wrote before the frame existed, so
//! that regenerated plots stay byte-identical.

use std::fmt::{Display, Write as _};

/// Tick multipliers of the regret plots.
pub const NICE_1_2_5: &[f64] = &[1.0, 2.0, 5.0];
/// Tick multipliers of the replay plot: 2.5 fits the narrow quality ranges better.
pub const NICE_1_2_25_5: &[f64] = &[1.0, 2.0, 2.5, 5.0];

/// Escapes text for SVG character data (attribute values here are all numbers or colours).
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A round tick spacing (`nice` × 10^k, else 10^(k+1)) giving about `target` ticks over `range`.
pub fn tick_step(range: f64, target: f64, nice: &[f64]) -> f64 {
    // The floor keeps an empty range from producing a zero step, which would never advance.
    let raw = (range / target).max(1e-9);
    let magnitude = 10f64.powf(raw.log10().floor());
    let norm = raw / magnitude;
    let n = nice.iter().copied().find(|n| norm <= *n).unwrap_or(10.0);
    n * magnitude
}

/// `lo`, `lo + step`, … up to `hi`; accumulated (not `lo + i·step`) as the plots always were,
/// with a little slack so that rounding does not drop the last tick.
pub fn ticks(lo: f64, hi: f64, step: f64) -> impl Iterator<Item = f64> {
    std::iter::successors(Some(lo), move |v| Some(v + step))
        .take_while(move |v| *v <= hi + step * 1e-9)
}

/// ` stroke-dasharray="…"`, or nothing for a solid line.
pub fn dash_attr(dash: &str) -> String {
    if dash.is_empty() {
        String::new()
    } else {
        format!(r#" stroke-dasharray="{dash}""#)
    }
}

/// The canvas and the plotting area inside its margins, with the data ranges it shows.
pub struct Frame {
    pub width: f64,
    pub height: f64,
    pub left: f64,
    pub top: f64,
    pub plot_w: f64,
    pub plot_h: f64,
    /// The data values at the left and right edges of the plot.
    pub x: (f64, f64),
    /// The data values at the bottom and top edges of the plot.
    pub y: (f64, f64),
}

impl Frame {
    /// `margins`: left, right, top, bottom; `x` and `y`: the data ranges at the plot's edges.
    pub fn new(
        size: (f64, f64),
        margins: (f64, f64, f64, f64),
        x: (f64, f64),
        y: (f64, f64),
    ) -> Self {
        let (width, height) = size;
        let (left, right, top, bottom) = margins;
        Frame {
            width,
            height,
            left,
            top,
            plot_w: width - left - right,
            plot_h: height - top - bottom,
            x,
            y,
        }
    }

    pub fn px(&self, x: f64) -> f64 {
        self.left + (x - self.x.0) / (self.x.1 - self.x.0).max(1e-9) * self.plot_w
    }

    pub fn py(&self, y: f64) -> f64 {
        self.top + self.plot_h - (y - self.y.0) / (self.y.1 - self.y.0).max(1e-9) * self.plot_h
    }

    /// The pixel row of the x axis.
    pub fn bottom(&self) -> f64 {
        self.top + self.plot_h
    }

    /// The pixel column of the plot's right edge.
    pub fn right(&self) -> f64 {
        self.left + self.plot_w
    }

    /// `x,y x,y …` in pixels, for a polyline.
    pub fn points(&self, data: impl IntoIterator<Item = (f64, f64)>) -> String {
        let points: Vec<String> = (data.into_iter())
            .map(|(x, y)| format!("{:.1},{:.1}", self.px(x), self.py(y)))
            .collect();
        points.join(" ")
    }

    /// The opening tag and a white background (viewers default to transparent).
    pub fn open(&self, o: &mut String) {
        let (width, height) = (self.width, self.height);
        let _ = writeln!(
            o,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="Helvetica, Arial, DejaVu Sans, sans-serif" font-size="12">"#
        );
        let _ = writeln!(
            o,
            r#"<rect width="{width}" height="{height}" fill="white"/>"#
        );
    }

    /// A bold title and a grey subtitle centred over the plot.
    pub fn title(&self, o: &mut String, title: &str, subtitle: &str) {
        let x = format!("{:.1}", self.left + self.plot_w / 2.0);
        let _ = writeln!(
            o,
            r#"<text x="{x}" y="24" font-size="16" font-weight="bold" text-anchor="middle">{}</text>"#,
            escape(title)
        );
        let _ = writeln!(
            o,
            r##"<text x="{x}" y="42" text-anchor="middle" fill="#444">{}</text>"##,
            escape(subtitle)
        );
    }

    /// A grid line across the plot at `y`, labelled on the left.
    pub fn y_tick(&self, o: &mut String, y: f64, label: impl Display) {
        let yy = self.py(y);
        let _ = writeln!(
            o,
            r##"<line x1="{}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#e5e5e5"/><text x="{:.1}" y="{:.1}" text-anchor="end">{label}</text>"##,
            self.left,
            self.right(),
            self.left - 6.0,
            yy + 4.0,
        );
    }

    /// A tick below the x axis at `x`, labelled under it.
    pub fn x_tick(&self, o: &mut String, x: f64, label: impl Display) {
        let xx = self.px(x);
        let bottom = self.bottom();
        let _ = writeln!(
            o,
            r##"<line x1="{xx:.1}" y1="{bottom:.1}" x2="{xx:.1}" y2="{:.1}" stroke="#333"/><text x="{xx:.1}" y="{:.1}" text-anchor="middle">{label}</text>"##,
            bottom + 5.0,
            bottom + 20.0,
        );
    }

    /// The x axis' name, centred under the tick labels (a fragment: the plots differ in how
    /// they break lines around it).
    pub fn x_label(&self, text: &str) -> String {
        format!(
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            self.left + self.plot_w / 2.0,
            self.height - 18.0,
            escape(text)
        )
    }

    /// The y axis' name, turned upright along the left margin (a fragment, as `x_label`).
    pub fn y_label(&self, text: &str) -> String {
        format!(
            r#"<text transform="translate(22 {:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
            self.top + self.plot_h / 2.0,
            escape(text)
        )
    }

    /// The legend, in the right margin.
    pub fn legend(&self) -> Legend {
        Legend {
            x: self.right() + 20.0,
            y: self.top + 10.0,
        }
    }
}

/// The legend's column and the baseline of its current row.
pub struct Legend {
    pub x: f64,
    pub y: f64,
}

impl Legend {
    /// A sample of a line, `length` long, centred on the row's text (a fragment).
    pub fn line(&self, length: f64, color: &str, dash: &str) -> String {
        let mid = self.y - 4.0;
        format!(
            r#"<line x1="{}" y1="{mid:.1}" x2="{:.1}" y2="{mid:.1}" stroke="{color}" stroke-width="2"{}/>"#,
            self.x,
            self.x + length,
            dash_attr(dash)
        )
    }

    /// The row's text, `indent` right of the column (a fragment).
    pub fn text(&self, indent: f64, label: &str) -> String {
        format!(
            r#"<text x="{:.1}" y="{:.1}">{}</text>"#,
            self.x + indent,
            self.y,
            escape(label)
        )
    }

    /// Moves down to the next row.
    pub fn next(&mut self, by: f64) {
        self.y += by;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_steps_are_round_and_about_the_target_count() {
        assert_eq!(tick_step(100.0, 8.0, NICE_1_2_5), 20.0);
        assert_eq!(tick_step(10_000.0, 8.0, NICE_1_2_5), 2_000.0);
        assert_eq!(tick_step(7.0, 8.0, NICE_1_2_5), 1.0);
        assert_eq!(tick_step(50.0, 8.0, NICE_1_2_5), 10.0);
        // 2.5 only where it is offered.
        assert_eq!(tick_step(20.0, 8.0, NICE_1_2_25_5), 2.5);
        assert_eq!(tick_step(20.0, 8.0, NICE_1_2_5), 5.0);
        // Past the largest multiplier: the next power of ten.
        assert_eq!(tick_step(60.0, 8.0, NICE_1_2_5), 10.0);
        // An empty range still advances.
        assert!(tick_step(0.0, 8.0, NICE_1_2_5) > 0.0);
    }

    #[test]
    fn ticks_reach_the_end_despite_rounding() {
        let t: Vec<f64> = ticks(0.0, 0.3, 0.1).collect();
        assert_eq!(t.len(), 4, "{t:?}");
        assert_eq!(ticks(0.0, 0.0, 1e-9).count(), 1);
    }

    #[test]
    fn escape_covers_markup_and_nothing_else() {
        assert_eq!(escape("a<b & c>d"), "a&lt;b &amp; c&gt;d");
        assert_eq!(escape("&lt;"), "&amp;lt;");
        assert_eq!(escape("RouteLLM's λ — 1–10 %"), "RouteLLM's λ — 1–10 %");
    }

    #[test]
    fn the_frame_maps_the_ranges_to_the_plot_area() {
        let f = Frame::new(
            (200.0, 100.0),
            (20.0, 30.0, 10.0, 10.0),
            (0.0, 10.0),
            (5.0, 15.0),
        );
        assert_eq!((f.plot_w, f.plot_h), (150.0, 80.0));
        assert_eq!((f.px(0.0), f.px(10.0)), (20.0, 170.0));
        // y grows upwards.
        assert_eq!((f.py(5.0), f.py(15.0)), (90.0, 10.0));
        assert_eq!(f.points([(0.0, 5.0), (5.0, 10.0)]), "20.0,90.0 95.0,50.0");
        let mut o = String::new();
        f.title(&mut o, "a<b", "");
        assert!(o.starts_with(r#"<text x="95.0" y="24""#), "{o}");
        assert!(o.contains(">a&lt;b</text>"), "{o}");
    }

    #[test]
    fn legend_rows_move_down_and_dash_only_when_asked() {
        let mut l = Legend { x: 10.0, y: 20.0 };
        assert_eq!(
            l.line(20.0, "#000", ""),
            r##"<line x1="10" y1="16.0" x2="30.0" y2="16.0" stroke="#000" stroke-width="2"/>"##
        );
        l.next(20.0);
        assert!(l.line(20.0, "#000", "1 3").contains(r#"y1="36.0""#));
        assert!(l
            .line(20.0, "#000", "1 3")
            .contains(r#" stroke-dasharray="1 3"/>"#));
        assert_eq!(
            l.text(28.0, "x&y"),
            r#"<text x="38.0" y="40.0">x&amp;y</text>"#
        );
    }
}
