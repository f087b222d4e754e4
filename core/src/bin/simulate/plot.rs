//! The regret plot of one scenario, as SVG.

use std::fmt::Write as _;

use super::play::Series;
use super::scenario::Scenario;
use super::svg::{dash_attr, tick_step, ticks, Frame, NICE_1_2_5};
use super::Options;

pub fn svg(scenario: &Scenario, opts: &Options, xs: &[u64], series: &[Series]) -> String {
    let (frame, y_step) = frame(opts, series);
    let bound = scenario.lai_robbins();
    let mut o = String::new();
    frame.open(&mut o);
    let _ = writeln!(
        o,
        r#"<defs><clipPath id="plot"><rect x="{}" y="{}" width="{}" height="{}"/></clipPath></defs>"#,
        frame.left, frame.top, frame.plot_w, frame.plot_h
    );
    let subtitle = format!(
        "{} (mean of {} runs, half-life {} for +decay)",
        scenario.title, opts.runs, opts.half_life
    );
    let title = format!("Cumulative regret: {}", scenario.name);
    frame.title(&mut o, &title, &subtitle);
    axes(&mut o, &frame, opts.steps, y_step);
    if scenario.after.is_some() {
        change(&mut o, &frame, opts.steps / 2);
    }
    if let Some(c) = bound {
        lai_robbins(&mut o, &frame, xs, c);
    }
    curves(&mut o, &frame, xs, series);
    legend(&mut o, &frame, opts.steps, bound, series);
    o.push_str("</svg>\n");
    o
}

/// Scaled to the learning strategies; uniform is clipped (its final value is in the legend).
/// Returns the frame and its y tick step.
fn frame(opts: &Options, series: &[Series]) -> (Frame, f64) {
    let learners_max = series
        .iter()
        .filter(|s| s.name != "uniform")
        .flat_map(|s| s.mean.iter().copied())
        .fold(1.0, f64::max);
    let y_step = tick_step(learners_max * 1.1, 8.0, NICE_1_2_5);
    let y_max = (learners_max * 1.1 / y_step).ceil() * y_step;
    let frame = Frame::new(
        (1040.0, 600.0),
        (80.0, 340.0, 60.0, 60.0),
        (0.0, opts.steps as f64),
        (0.0, y_max),
    );
    (frame, y_step)
}

/// Grid, ticks, the two axes and their names.
fn axes(o: &mut String, frame: &Frame, steps: u64, y_step: f64) {
    for y in ticks(0.0, frame.y.1, y_step) {
        frame.y_tick(o, y, y);
    }
    let x_max = steps as f64;
    for x in ticks(0.0, x_max, tick_step(x_max, 8.0, NICE_1_2_5)) {
        frame.x_tick(o, x, x);
    }
    let (left, top, bottom) = (frame.left, frame.top, frame.bottom());
    let _ = writeln!(
        o,
        r##"<line x1="{left}" y1="{top}" x2="{left}" y2="{bottom:.1}" stroke="#333"/><line x1="{left}" y1="{bottom:.1}" x2="{:.1}" y2="{bottom:.1}" stroke="#333"/>"##,
        frame.right(),
    );
    let _ = writeln!(o, "{}", frame.x_label("step"));
    let _ = writeln!(
        o,
        "{}",
        frame.y_label("cumulative regret (expected reward lost)")
    );
}

/// A dotted vertical line where the scenario changes.
fn change(o: &mut String, frame: &Frame, at: u64) {
    let xc = frame.px(at as f64);
    let _ = writeln!(
        o,
        r##"<line x1="{xc:.1}" y1="{}" x2="{xc:.1}" y2="{:.1}" stroke="#888" stroke-dasharray="2 4"/><text x="{:.1}" y="{:.1}" fill="#666">change</text>"##,
        frame.top,
        frame.bottom(),
        xc + 4.0,
        frame.top + 14.0
    );
}

/// The Lai–Robbins lower bound `c ln t` (steady Bernoulli problems).
fn lai_robbins(o: &mut String, frame: &Frame, xs: &[u64], c: f64) {
    let points =
        frame.points((xs.iter().filter(|x| **x > 0)).map(|x| (*x as f64, c * (*x as f64).ln())));
    let _ = writeln!(
        o,
        r##"<polyline clip-path="url(#plot)" fill="none" stroke="#000" stroke-width="1.5" stroke-dasharray="1 3" points="{points}"/>"##
    );
}

/// The oracle (no regret) and one curve per strategy.
fn curves(o: &mut String, frame: &Frame, xs: &[u64], series: &[Series]) {
    let zero = frame.py(0.0);
    let _ = writeln!(
        o,
        r##"<line x1="{}" y1="{zero:.1}" x2="{:.1}" y2="{zero:.1}" stroke="#000" stroke-width="2"/>"##,
        frame.left,
        frame.right(),
    );
    for s in series {
        let points = frame.points(xs.iter().zip(&s.mean).map(|(x, y)| (*x as f64, *y)));
        let _ = writeln!(
            o,
            r#"<polyline clip-path="url(#plot)" fill="none" stroke="{}" stroke-width="2"{} points="{points}"/>"#,
            s.color,
            dash_attr(s.dash),
        );
    }
}

/// Each line's regret at the last step (and, after a change, its share on the new best).
fn legend(o: &mut String, frame: &Frame, steps: u64, bound: Option<f64>, series: &[Series]) {
    let mut legend = frame.legend();
    let _ = writeln!(
        o,
        r#"<text x="{}" y="{}" font-weight="bold">regret at step {steps}</text>"#,
        legend.x, legend.y
    );
    legend.next(22.0);
    let mut row = |o: &mut String, color: &str, dash: &str, label: &str| {
        let _ = writeln!(
            o,
            "{}{}",
            legend.line(28.0, color, dash),
            legend.text(36.0, label)
        );
        legend.next(20.0);
    };
    row(o, "#000", "", "oracle: 0");
    if let Some(c) = bound {
        let at = c * (steps as f64).ln();
        row(o, "#000", "1 3", &format!("Lai–Robbins c·ln t: {at:.1}"));
    }
    for s in series {
        let last = s.mean.last().copied().unwrap_or(0.0);
        let clipped = if last > frame.y.1 { " (off scale)" } else { "" };
        let share = (s.new_best_share).map_or(String::new(), |v| format!(", new best {v:.2}"));
        let label = format!("{}: {:.0}{clipped}{share}", s.name, last);
        row(o, s.color, s.dash, &label);
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

    /// The x ticks run from 0 to the last step in round steps, the y grid starts at 0 and
    /// reaches above every learner's curve, and strategies whose curve runs off it say so.
    #[test]
    fn the_axes_span_the_steps_and_the_learners() {
        let opts = Options {
            runs: 2,
            steps: 2_000,
            ..crate::default_options()
        };
        let xs = crate::sample_steps(opts.steps, 10);
        let scenario = scenarios().into_iter().next().expect("a scenario");
        let series = simulate(&opts, &scenario, 10).unwrap_or_default();
        let (frame, _) = frame(&opts, &series);
        let svg = svg(&scenario, &opts, &xs, &series);
        for x in ["0", "500", "1000", "1500", "2000"] {
            assert!(
                svg.contains(&format!(r#"text-anchor="middle">{x}</text>"#)),
                "{x}"
            );
        }
        assert!(!svg.contains(r#"text-anchor="middle">2500</text>"#));
        assert!(svg.contains(r#"text-anchor="end">0</text>"#));
        for s in &series {
            let last = s.mean.last().copied().unwrap_or(0.0);
            if s.name != "uniform" {
                assert!(last <= frame.y.1, "{}", s.name);
            }
            let marked = svg.contains(&format!(">{}: {last:.0} (off scale)", s.name));
            assert_eq!(marked, last > frame.y.1, "{}", s.name);
        }
        assert!(svg.ends_with("</svg>\n"));
    }
}
