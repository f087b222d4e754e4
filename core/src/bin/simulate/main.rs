//! Offline replay of the bandit strategies against synthetic arms.
//!
//! ```text
//! cargo run --release --bin simulate -- --out <dir> [--steps 10000] [--seed 1] [--runs 20]
//!                                       [--half-life 500] [--epsilon 0.1]
//! ```
//!
//! Two scenarios, each with a regime change half-way (the best and the worst arm swap):
//! * `bernoulli`: rewards 0/1 with success probabilities 0.9 / 0.6 / 0.5;
//! * `continuous`: rewards in `[0, 1]` drawn from Beta(7, 3) / Beta(5.5, 4.5) / Beta(5, 5)
//!   (means 0.7 / 0.55 / 0.5).
//!
//! Every strategy (epsilon-greedy, Thompson, UCB1; each without decay and with a half-life)
//! runs through the library's own `Strategy::select`/`Strategy::update`, over `--runs` seeds.
//! The regret is the pseudo-regret `best mean - mean of the chosen arm`, cumulated over steps
//! and averaged over runs; uniform random choice and the oracle (always the best arm, regret 0)
//! are the reference lines. Writes `<scenario>.csv` and `<scenario>.svg` per scenario and
//! `summary.csv`, and prints the final regret per strategy and scenario.

mod replay;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use inference_router_core::bandit::{sample, Algorithm, Decay, Strategy, StrategyParams};
use inference_router_core::rng::Rng;

const USAGE: &str = "usage: simulate --out <dir> [--steps N (10000)] [--seed N (1)] \
[--runs N (20)] [--half-life OBSERVATIONS (500)] [--epsilon E (0.1)]";

/// Points per curve in the CSV and the plot.
const POINTS: u64 = 200;

struct Options {
    out: PathBuf,
    steps: u64,
    seed: u64,
    runs: u64,
    half_life: f64,
    epsilon: f64,
}

fn parse_args(args: impl Iterator<Item = String>) -> Result<Option<Options>, String> {
    let mut out = None;
    let mut opts = Options {
        out: PathBuf::new(),
        steps: 10_000,
        seed: 1,
        runs: 20,
        half_life: 500.0,
        epsilon: 0.1,
    };
    let mut args = args.peekable();
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            return Ok(None);
        }
        let value = args
            .next()
            .ok_or_else(|| format!("{flag}: missing value"))?;
        let number = |v: &str| -> Result<u64, String> {
            v.parse::<u64>()
                .map_err(|_| format!("{flag}: expected a whole number, got {v:?}"))
        };
        let real = |v: &str| -> Result<f64, String> {
            v.parse::<f64>()
                .map_err(|_| format!("{flag}: expected a number, got {v:?}"))
        };
        match flag.as_str() {
            "--out" => out = Some(PathBuf::from(value)),
            "--steps" => opts.steps = number(&value)?,
            "--seed" => opts.seed = number(&value)?,
            "--runs" => opts.runs = number(&value)?,
            "--half-life" => opts.half_life = real(&value)?,
            "--epsilon" => opts.epsilon = real(&value)?,
            _ => return Err(format!("unknown argument {flag:?}")),
        }
    }
    opts.out = out.ok_or("--out is required")?;
    if opts.steps < 2 {
        return Err("--steps: must be at least 2".into());
    }
    if opts.runs == 0 {
        return Err("--runs: must be at least 1".into());
    }
    Ok(Some(opts))
}

/// Reward distribution of one arm.
#[derive(Clone, Copy)]
enum Arm {
    Bernoulli(f64),
    Beta(f64, f64),
}

impl Arm {
    fn mean(self) -> f64 {
        match self {
            Arm::Bernoulli(p) => p,
            Arm::Beta(a, b) => a / (a + b),
        }
    }

    fn draw(self, rng: &mut Rng) -> f64 {
        match self {
            Arm::Bernoulli(p) => {
                if rng.next_f64() < p {
                    1.0
                } else {
                    0.0
                }
            }
            Arm::Beta(a, b) => sample::beta(rng, a, b),
        }
    }
}

struct Scenario {
    name: &'static str,
    title: &'static str,
    before: Vec<Arm>,
    after: Vec<Arm>,
}

fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "bernoulli",
            title: "Bernoulli arms 0.9 / 0.6 / 0.5, best and worst swap half-way",
            before: vec![
                Arm::Bernoulli(0.9),
                Arm::Bernoulli(0.6),
                Arm::Bernoulli(0.5),
            ],
            after: vec![
                Arm::Bernoulli(0.5),
                Arm::Bernoulli(0.6),
                Arm::Bernoulli(0.9),
            ],
        },
        Scenario {
            name: "continuous",
            title: "Beta-distributed rewards, means 0.7 / 0.55 / 0.5, best and worst swap half-way",
            before: vec![
                Arm::Beta(7.0, 3.0),
                Arm::Beta(5.5, 4.5),
                Arm::Beta(5.0, 5.0),
            ],
            after: vec![
                Arm::Beta(5.0, 5.0),
                Arm::Beta(5.5, 4.5),
                Arm::Beta(7.0, 3.0),
            ],
        },
    ]
}

/// A line in the results: a strategy, or uniform random (`None`).
struct Player {
    name: String,
    strategy: Option<Strategy>,
    color: &'static str,
    dashed: bool,
}

fn players(opts: &Options, arms: usize) -> Result<Vec<Player>, String> {
    let mut players = vec![Player {
        name: "uniform".into(),
        strategy: None,
        color: "#999999",
        dashed: false,
    }];
    let algorithms = [
        (
            "epsilon_greedy",
            Algorithm::EpsilonGreedy {
                epsilon: opts.epsilon,
            },
            "#d62728",
        ),
        ("thompson", Algorithm::Thompson, "#1f77b4"),
        ("ucb1", Algorithm::Ucb1, "#2ca02c"),
    ];
    for (name, algorithm, color) in algorithms {
        for decayed in [false, true] {
            let params = StrategyParams {
                decay: if decayed {
                    Decay::HalfLife {
                        observations: opts.half_life,
                    }
                } else {
                    Decay::None
                },
                ..StrategyParams::new(algorithm)
            };
            let strategy = Strategy::new(params, arms).map_err(|e| e.to_string())?;
            players.push(Player {
                name: if decayed {
                    format!("{name}+decay")
                } else {
                    name.to_owned()
                },
                strategy: Some(strategy),
                color,
                dashed: decayed,
            });
        }
    }
    Ok(players)
}

/// One run: cumulative pseudo-regret at every `every` steps (and the last step).
fn run(
    player: &Player,
    scenario: &Scenario,
    steps: u64,
    every: u64,
    seed: u64,
) -> Result<Vec<f64>, String> {
    let names: Vec<String> = (0..scenario.before.len())
        .map(|i| format!("arm{i}"))
        .collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut select_rng = Rng::seed_from_u64(seed);
    let mut reward_rng = Rng::seed_from_u64(seed ^ 0xA5A5_A5A5_A5A5_A5A5);
    let mut state = player.strategy.as_ref().map(|s| s.initial_state(&names));
    let half = steps / 2;
    let mut cumulative = 0.0;
    let mut curve = Vec::with_capacity(usize::try_from(steps / every + 2).unwrap_or(0));
    curve.push(0.0);
    for t in 0..steps {
        let arms = if t < half {
            &scenario.before
        } else {
            &scenario.after
        };
        let best = arms
            .iter()
            .map(|a| a.mean())
            .fold(f64::NEG_INFINITY, f64::max);
        let choice = match (&player.strategy, &state) {
            (Some(s), Some(st)) => s.select(st, &mut select_rng),
            _ => usize::try_from(select_rng.below(arms.len() as u64)).unwrap_or(0),
        };
        let arm = arms
            .get(choice)
            .ok_or_else(|| format!("{} chose arm {choice} of {}", player.name, arms.len()))?;
        cumulative += best - arm.mean();
        let reward = arm.draw(&mut reward_rng);
        if let (Some(s), Some(st)) = (&player.strategy, &mut state) {
            s.update(st, choice, reward)
                .map_err(|e| format!("{}: {e}", player.name))?;
        }
        if (t + 1) % every == 0 || t + 1 == steps {
            curve.push(cumulative);
        }
    }
    Ok(curve)
}

struct Series {
    name: String,
    color: &'static str,
    dashed: bool,
    /// Mean cumulative regret at each sampled step.
    mean: Vec<f64>,
    /// Standard deviation over runs of the final regret.
    final_sd: f64,
}

fn sample_steps(steps: u64, every: u64) -> Vec<u64> {
    let mut xs = vec![0];
    xs.extend((1..=steps).filter(|t| t % every == 0 || *t == steps));
    xs
}

fn simulate(opts: &Options, scenario: &Scenario, every: u64) -> Result<Vec<Series>, String> {
    let mut series = Vec::new();
    for player in players(opts, scenario.before.len())? {
        let mut sum: Vec<f64> = Vec::new();
        let mut finals = Vec::new();
        for r in 0..opts.runs {
            let seed = opts.seed.wrapping_mul(1_000_003).wrapping_add(r);
            let curve = run(&player, scenario, opts.steps, every, seed)?;
            if sum.is_empty() {
                sum = vec![0.0; curve.len()];
            }
            for (acc, v) in sum.iter_mut().zip(&curve) {
                *acc += v;
            }
            finals.push(curve.last().copied().unwrap_or(0.0));
        }
        let n = opts.runs as f64;
        let mean_final = finals.iter().sum::<f64>() / n;
        let var = if finals.len() > 1 {
            finals.iter().map(|f| (f - mean_final).powi(2)).sum::<f64>() / (n - 1.0)
        } else {
            0.0
        };
        series.push(Series {
            name: player.name,
            color: player.color,
            dashed: player.dashed,
            mean: sum.iter().map(|s| s / n).collect(),
            final_sd: var.sqrt(),
        });
    }
    Ok(series)
}

fn csv(xs: &[u64], series: &[Series]) -> String {
    let mut out = String::from("step,oracle");
    for s in series {
        out.push(',');
        out.push_str(&s.name);
    }
    out.push('\n');
    for (i, x) in xs.iter().enumerate() {
        let _ = write!(out, "{x},0");
        for s in series {
            let _ = write!(out, ",{:.3}", s.mean.get(i).copied().unwrap_or(f64::NAN));
        }
        out.push('\n');
    }
    out
}

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

fn svg(scenario: &Scenario, opts: &Options, xs: &[u64], series: &[Series]) -> String {
    let (width, height) = (960.0, 600.0);
    let (left, right, top, bottom) = (80.0, 250.0, 60.0, 60.0);
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
    // Regime change.
    let xc = px((opts.steps / 2) as f64);
    let _ = writeln!(
        o,
        r##"<line x1="{xc:.1}" y1="{top}" x2="{xc:.1}" y2="{:.1}" stroke="#888" stroke-dasharray="2 4"/><text x="{:.1}" y="{:.1}" fill="#666">regime change</text>"##,
        top + plot_h,
        xc + 4.0,
        top + 14.0
    );

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
        let dash = if s.dashed {
            r#" stroke-dasharray="7 4""#
        } else {
            ""
        };
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
    let mut entry = |o: &mut String, color: &str, dashed: bool, label: String| {
        let dash = if dashed {
            r#" stroke-dasharray="7 4""#
        } else {
            ""
        };
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
    entry(&mut o, "#000", false, "oracle: 0".into());
    for s in series {
        let last = s.mean.last().copied().unwrap_or(0.0);
        let clipped = if last > y_max { " (off scale)" } else { "" };
        entry(
            &mut o,
            s.color,
            s.dashed,
            format!("{}: {:.0}{clipped}", s.name, last),
        );
    }
    o.push_str("</svg>\n");
    o
}

fn write(path: &Path, contents: &str) -> Result<(), String> {
    std::fs::write(path, contents).map_err(|e| format!("{}: {e}", path.display()))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--replay") {
        return match replay::main(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("simulate: {e}\n{}", replay::USAGE);
                ExitCode::from(2)
            }
        };
    }
    let opts = match parse_args(args.into_iter()) {
        Ok(Some(opts)) => opts,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("simulate: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run_all(&opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("simulate: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_all(opts: &Options) -> Result<(), String> {
    std::fs::create_dir_all(&opts.out).map_err(|e| format!("{}: {e}", opts.out.display()))?;
    let started = std::time::Instant::now();
    let every = (opts.steps / POINTS).max(1);
    let xs = sample_steps(opts.steps, every);
    let mut table: Vec<(&'static str, Vec<Series>)> = Vec::new();
    for scenario in scenarios() {
        let series = simulate(opts, &scenario, every)?;
        write(
            &opts.out.join(format!("{}.csv", scenario.name)),
            &csv(&xs, &series),
        )?;
        write(
            &opts.out.join(format!("{}.svg", scenario.name)),
            &svg(&scenario, opts, &xs, &series),
        )?;
        table.push((scenario.name, series));
    }

    // Summary: final regret (mean ± sd over runs) per strategy and scenario.
    let mut summary = String::from("strategy");
    let mut printed = format!("{:<22}", "strategy");
    for (name, _) in &table {
        let _ = write!(summary, ",{name},{name}_sd");
        let _ = write!(printed, "{:>22}", name);
    }
    summary.push('\n');
    let names: Vec<String> = table
        .first()
        .map(|(_, s)| {
            let mut v = vec!["oracle".to_owned()];
            v.extend(s.iter().map(|s| s.name.clone()));
            v
        })
        .unwrap_or_default();
    let mut rows = vec![printed];
    for name in &names {
        let mut line = format!("{name:<22}");
        summary.push_str(name);
        for (_, series) in &table {
            let (mean, sd) = series
                .iter()
                .find(|s| &s.name == name)
                .map(|s| (s.mean.last().copied().unwrap_or(0.0), s.final_sd))
                .unwrap_or((0.0, 0.0));
            let _ = write!(line, "{:>22}", format!("{mean:.1} ± {sd:.1}"));
            let _ = write!(summary, ",{mean:.3},{sd:.3}");
        }
        summary.push('\n');
        rows.push(line);
    }
    write(&opts.out.join("summary.csv"), &summary)?;
    println!(
        "cumulative regret at step {} (mean ± sd over {} runs; seed {}; half-life {}; epsilon {})",
        opts.steps, opts.runs, opts.seed, opts.half_life, opts.epsilon
    );
    for row in rows {
        println!("{row}");
    }
    println!(
        "wrote {}/{{bernoulli,continuous}}.{{csv,svg}} and summary.csv in {:.1}s",
        opts.out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
