//! The regret plot of one scenario, as SVG.

use std::fmt::Write as _;

use super::play::Series;
use super::scenario::Scenario;
use super::Options;

/// A "nice" tick spacing (1, 2 or 5 × 10^k) giving about `target` ticks over `range`.
fn tick_step(range: f64, target: f64) -> f64 {
    let raw = (range / target).max(f64::MIN_POSITIVE);
    let magnitude = 10f64.powf(raw.log10().floor());
    let norm = raw / magnitude;
    let nice = if norm <= 1.0 {
        1.0
    } else if norm <= 2.0 {
        2.0
    } else if norm <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * magnitude
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

pub fn svg(scenario: &Scenario, opts: &Options, xs: &[u64], series: &[Series]) -> String {
    let (width, height) = (1040.0, 600.0);
    let (left, right, top, bottom) = (80.0, 340.0, 60.0, 60.0);
    let plot_w = width - left - right;
    let plot_h = height - top - bottom;
    let x_max = opts.steps as f64;
    // Scale to the learning strategies; uniform is clipped (its final value is in the legend).
    let learners_max = series
        .iter()
        .filter(|s| s.name != "uniform")
        .flat_map(|s| s.mean.iter().copied())
        .fold(1.0, f64::max);
    let y_step = tick_step(learners_max * 1.1, 8.0);
    let y_max = (learners_max * 1.1 / y_step).ceil() * y_step;
    let px = |x: f64| left + x / x_max * plot_w;
    let py = |y: f64| top + plot_h - y / y_max * plot_h;

    let mut o = String::new();
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="Helvetica, Arial, DejaVu Sans, sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        o,
        r#"<rect width="{width}" height="{height}" fill="white"/>"#
    );
    let _ = writeln!(
        o,
        r#"<defs><clipPath id="plot"><rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}"/></clipPath></defs>"#
    );
    let _ = writeln!(
        o,
        r#"<text x="{}" y="24" font-size="16" font-weight="bold" text-anchor="middle">Cumulative regret: {}</text>"#,
        left + plot_w / 2.0,
        escape(scenario.name)
    );
    let _ = writeln!(
        o,
        r##"<text x="{}" y="42" text-anchor="middle" fill="#444">{} (mean of {} runs, half-life {} for +decay)</text>"##,
        left + plot_w / 2.0,
        escape(scenario.title),
        opts.runs,
        opts.half_life
    );

    // Grid and y ticks.
    let mut y = 0.0;
    while y <= y_max + y_step * 1e-9 {
        let yy = py(y);
        let _ = writeln!(
            o,
            r##"<line x1="{left}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#e5e5e5"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            left + plot_w,
            left - 6.0,
            yy + 4.0,
            y
        );
        y += y_step;
    }
    // X ticks.
    let x_step = tick_step(x_max, 8.0);
    let mut x = 0.0;
    while x <= x_max + x_step * 1e-9 {
        let xx = px(x);
        let _ = writeln!(
            o,
            r##"<line x1="{xx:.1}" y1="{:.1}" x2="{xx:.1}" y2="{:.1}" stroke="#333"/><text x="{xx:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            top + plot_h,
            top + plot_h + 5.0,
            top + plot_h + 20.0,
            x
        );
        x += x_step;
    }
    // Axes and labels.
    let _ = writeln!(
        o,
        r##"<line x1="{left}" y1="{top}" x2="{left}" y2="{:.1}" stroke="#333"/><line x1="{left}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#333"/>"##,
        top + plot_h,
        top + plot_h,
        left + plot_w,
        top + plot_h
    );
    let _ = writeln!(
        o,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">step</text>"#,
        left + plot_w / 2.0,
        height - 18.0
    );
    let _ = writeln!(
        o,
        r#"<text transform="translate(22 {:.1}) rotate(-90)" text-anchor="middle">cumulative regret (expected reward lost)</text>"#,
        top + plot_h / 2.0
    );
    // The change, if any.
    if scenario.after.is_some() {
        let xc = px((opts.steps / 2) as f64);
        let _ = writeln!(
            o,
            r##"<line x1="{xc:.1}" y1="{top}" x2="{xc:.1}" y2="{:.1}" stroke="#888" stroke-dasharray="2 4"/><text x="{:.1}" y="{:.1}" fill="#666">change</text>"##,
            top + plot_h,
            xc + 4.0,
            top + 14.0
        );
    }
    // The Lai–Robbins lower bound c ln t (steady Bernoulli problems).
    let bound = scenario.lai_robbins();
    if let Some(c) = bound {
        let mut points = String::new();
        for x in xs.iter().filter(|x| **x > 0) {
            let _ = write!(
                points,
                "{:.1},{:.1} ",
                px(*x as f64),
                py(c * (*x as f64).ln())
            );
        }
        let _ = writeln!(
            o,
            r##"<polyline clip-path="url(#plot)" fill="none" stroke="#000" stroke-width="1.5" stroke-dasharray="1 3" points="{}"/>"##,
            points.trim_end()
        );
    }

    // Oracle and the series.
    let _ = writeln!(
        o,
        r##"<line x1="{left}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#000" stroke-width="2"/>"##,
        py(0.0),
        left + plot_w,
        py(0.0)
    );
    for s in series {
        let mut points = String::new();
        for (x, y) in xs.iter().zip(&s.mean) {
            let _ = write!(points, "{:.1},{:.1} ", px(*x as f64), py(*y));
        }
        let dash = dash_attr(s.dash);
        let _ = writeln!(
            o,
            r#"<polyline clip-path="url(#plot)" fill="none" stroke="{}" stroke-width="2"{dash} points="{}"/>"#,
            s.color,
            points.trim_end()
        );
    }

    // Legend.
    let lx = left + plot_w + 20.0;
    let mut ly = top + 10.0;
    let _ = writeln!(
        o,
        r#"<text x="{lx}" y="{ly}" font-weight="bold">regret at step {}</text>"#,
        opts.steps
    );
    ly += 22.0;
    let mut entry = |o: &mut String, color: &str, dash: &str, label: String| {
        let dash = dash_attr(dash);
        let _ = writeln!(
            o,
            r#"<line x1="{lx}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{color}" stroke-width="2"{dash}/><text x="{:.1}" y="{ly:.1}">{}</text>"#,
            ly - 4.0,
            lx + 28.0,
            ly - 4.0,
            lx + 36.0,
            escape(&label)
        );
        ly += 20.0;
    };
    entry(&mut o, "#000", "", "oracle: 0".into());
    if let Some(c) = bound {
        let at = c * x_max.ln();
        entry(
            &mut o,
            "#000",
            "1 3",
            format!("Lai–Robbins c·ln t: {at:.1}"),
        );
    }
    for s in series {
        let last = s.mean.last().copied().unwrap_or(0.0);
        let clipped = if last > y_max { " (off scale)" } else { "" };
        let share = (s.new_best_share).map_or(String::new(), |v| format!(", new best {v:.2}"));
        entry(
            &mut o,
            s.color,
            s.dash,
            format!("{}: {:.0}{clipped}{share}", s.name, last),
        );
    }
    o.push_str("</svg>\n");
    o
}

fn dash_attr(dash: &str) -> String {
    if dash.is_empty() {
        String::new()
    } else {
        format!(r#" stroke-dasharray="{dash}""#)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::play::simulate;
    use crate::scenario::scenarios;

    /// The bound line is drawn on steady Bernoulli problems only; the change line and the
    /// share on the new best on problems with a change.
    #[test]
    fn steady_plots_have_the_bound_and_changing_ones_the_change() {
        let opts = Options {
            runs: 2,
            steps: 2_000,
            ..crate::default_options()
        };
        let xs = crate::sample_steps(opts.steps, 10);
        for scenario in scenarios() {
            let series = simulate(&opts, &scenario, 10).unwrap_or_default();
            let svg = svg(&scenario, &opts, &xs, &series);
            let steady = scenario.after.is_none();
            assert_eq!(
                svg.contains("Lai–Robbins c·ln t: 7.3"),
                steady,
                "{}",
                scenario.name
            );
            assert_eq!(svg.contains(">change</text>"), !steady, "{}", scenario.name);
            assert!(svg.contains("thompson+change: "), "{}", scenario.name);
            assert_eq!(svg.contains(", new best 0."), !steady, "{}", scenario.name);
        }
    }
}
