//! Offline runs of the bandit strategies: against synthetic arms (scenarios, below), or
//! replaying real per-prompt judgements (`--replay`, [`replay`]).
//!
//! ```text
//! cargo run --release --bin simulate -- --out <dir> [--scenario all] [--steps 10000]
//!                                       [--seed 1] [--runs 200] [--half-life 500]
//!                                       [--epsilon 0.1] [--min-share 0] [--window 500,1000]
//! ```
//!
//! Scenarios (`--scenario NAME`, or `all`), changes half-way through `--steps`:
//! * `steady`: Bernoulli 0.9 / 0.6, nothing changes; the plot has the Lai–Robbins lower bound
//!   `c ln t`, `c = sum over suboptimal arms of (best - mean) / KL(mean, best)` (8.9 at 10,000);
//! * `drift`: the same, the best falls to 0.5 half-way (0.6 is then best);
//! * `regime`: Bernoulli 0.9 / 0.6 / 0.5, the best and the worst swap half-way;
//! * `continuous`: rewards in `[0, 1]` from Beta(7, 3) / Beta(5.5, 4.5) / Beta(5, 5) (means
//!   0.7 / 0.55 / 0.5), the best and the worst swap half-way;
//! * `batched`: `steady` with rewards applied in batches of 50 (feedback that arrives late).
//!
//! Every strategy (epsilon-greedy, Thompson, UCB1; each plain and with a half-life; Thompson and
//! UCB1 also with change detection at its defaults; all with the `--min-share` floor) runs through the library's own
//! `Strategy::select` / `Strategy::update_watched`, over `--runs` seeds. The regret is the
//! pseudo-regret `best mean - mean of the chosen arm`, cumulated over steps and averaged over
//! runs; uniform random choice and the oracle (always the best arm, regret 0) are the reference
//! lines. Also measured: the share of decisions on the new best arm `--window` (500 to 1,000)
//! steps after a change, and the change-detection alarms (on steady scenarios every alarm is a false one).
//! Writes `<scenario>.csv` and `<scenario>.svg` per scenario and `summary.csv`, and prints
//! the table.

mod play;
mod plot;
mod replay;
mod scenario;
mod svg;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use play::Series;
use scenario::Scenario;

const USAGE: &str = "usage: simulate --out <dir> [--scenario NAME|all (all)] [--steps N (10000)] \
[--seed N (1)] [--runs N (200)] [--half-life OBSERVATIONS (500)] [--epsilon E (0.1)] \
[--min-share S (0)] [--window FROM,TO (500,1000)]
scenarios: steady, drift, regime, continuous, batched";

/// Points per curve in the CSV and the plot.
const POINTS: u64 = 200;

pub struct Options {
    out: PathBuf,
    /// A scenario's name, or `all`.
    scenario: String,
    pub steps: u64,
    pub seed: u64,
    pub runs: u64,
    pub half_life: f64,
    pub epsilon: f64,
    /// Every learner's floor per arm (0: none).
    pub min_share: f64,
    /// Decisions counted for the share on the new best, in steps after the change.
    pub window: (u64, u64),
}

fn default_options() -> Options {
    Options {
        out: PathBuf::new(),
        scenario: "all".into(),
        steps: 10_000,
        seed: 1,
        runs: 200,
        half_life: 500.0,
        epsilon: 0.1,
        min_share: 0.0,
        window: (500, 1_000),
    }
}

fn parse_args(args: impl Iterator<Item = String>) -> Result<Option<Options>, String> {
    let mut out = None;
    let mut opts = default_options();
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
            "--scenario" => opts.scenario = value,
            "--steps" => opts.steps = number(&value)?,
            "--seed" => opts.seed = number(&value)?,
            "--runs" => opts.runs = number(&value)?,
            "--half-life" => opts.half_life = real(&value)?,
            "--epsilon" => opts.epsilon = real(&value)?,
            "--min-share" => opts.min_share = real(&value)?,
            "--window" => opts.window = window(&value)?,
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
    if opts.scenario != "all" && !scenario::NAMES.contains(&opts.scenario.as_str()) {
        return Err(format!(
            "--scenario: {:?} is not one of all, {}",
            opts.scenario,
            scenario::NAMES.join(", ")
        ));
    }
    Ok(Some(opts))
}

/// `FROM,TO` steps after the change, `FROM < TO`.
fn window(v: &str) -> Result<(u64, u64), String> {
    let parsed = v
        .split_once(',')
        .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)));
    match parsed {
        Some((from, to)) if from < to => Ok((from, to)),
        _ => Err(format!("--window: expected FROM,TO (FROM < TO), got {v:?}")),
    }
}

fn sample_steps(steps: u64, every: u64) -> Vec<u64> {
    let mut xs = vec![0];
    xs.extend((1..=steps).filter(|t| t % every == 0 || *t == steps));
    xs
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
            println!("{USAGE}\n{}", replay::USAGE);
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
    let chosen = scenario::scenarios()
        .into_iter()
        .filter(|s| opts.scenario == "all" || opts.scenario == s.name);
    let mut table: Vec<(Scenario, Vec<Series>)> = Vec::new();
    for scenario in chosen {
        let series = play::simulate(opts, &scenario, every)?;
        let path = |ext: &str| opts.out.join(format!("{}.{ext}", scenario.name));
        write(&path("csv"), &csv(&xs, &series))?;
        write(&path("svg"), &plot::svg(&scenario, opts, &xs, &series))?;
        table.push((scenario, series));
    }
    let (summary, printed) = summary(opts, &table);
    write(&opts.out.join("summary.csv"), &summary)?;
    print!("{printed}");
    println!(
        "wrote {} (<scenario>.csv, <scenario>.svg, summary.csv) in {:.1}s",
        opts.out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The table, as CSV and as text: per scenario and strategy the regret at the last step (mean,
/// sd), the share on the new best after a change, and the change-detection alarms.
fn summary(opts: &Options, table: &[(Scenario, Vec<Series>)]) -> (String, String) {
    let mut csv = String::from(
        "scenario,strategy,regret,regret_sd,new_best_share,new_best_p01,runs_with_alarm,alarms_per_run\n",
    );
    let (from, to) = opts.window;
    let mut text = format!(
        "regret at step {} (mean ± sd over {} runs; seed {}; half-life {}; epsilon {}; min share {}); \
         new best: share of decisions {from}..{to} steps after the change (mean, and the lowest \
         but 1% of runs); alarms: runs with any / per run\n",
        opts.steps, opts.runs, opts.seed, opts.half_life, opts.epsilon, opts.min_share
    );
    for (scenario, series) in table {
        let _ = write!(text, "\n{}", scenario.name);
        if let Some(c) = scenario.lai_robbins() {
            let at = c * (opts.steps as f64).ln();
            let _ = write!(text, " (Lai–Robbins bound {c:.4} ln T = {at:.2})");
        }
        let _ = writeln!(
            text,
            "\n  {:<22}{:>16}{:>10}{:>10}{:>14}",
            "strategy", "regret", "new best", "p01", "alarms"
        );
        for s in series {
            let regret = s.mean.last().copied().unwrap_or(0.0);
            let three = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.3}"));
            let (share, p01) = (three(s.new_best_share), three(s.new_best_p01));
            let _ = writeln!(
                csv,
                "{},{},{regret:.3},{:.3},{share},{p01},{},{:.4}",
                scenario.name, s.name, s.final_sd, s.runs_alarmed, s.alarms_per_run
            );
            let alarms = format!("{}/{:.2}", s.runs_alarmed, s.alarms_per_run);
            let _ = writeln!(
                text,
                "  {:<22}{:>16}{share:>10}{p01:>10}{alarms:>14}",
                s.name,
                format!("{regret:.1} ± {:.1}", s.final_sd)
            );
        }
    }
    (csv, text)
}
