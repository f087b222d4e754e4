//! The strategies compared, one run of one of them on a scenario, and the averages over runs.

use inference_router_core::bandit::{
    Algorithm, ChangeParams, Decay, ModelState, Strategy, StrategyParams,
};
use inference_router_core::rng::Rng;

use super::scenario::Scenario;
use super::Options;

/// A line in the results: a strategy, or uniform random (`None`).
pub struct Player {
    pub name: String,
    pub strategy: Option<Strategy>,
    pub color: &'static str,
    /// SVG `stroke-dasharray`, empty for a solid line.
    pub dash: &'static str,
}

/// Uniform, then each algorithm plain, with a half-life, and (Thompson, UCB1) with change
/// detection at its default parameters; every learner with the `--min-share` floor.
pub fn players(opts: &Options, arms: usize) -> Result<Vec<Player>, String> {
    let mut players = vec![Player {
        name: "uniform".into(),
        strategy: None,
        color: "#999999",
        dash: "",
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
        let watched = !matches!(algorithm, Algorithm::EpsilonGreedy { .. });
        let variants = [("", "", false, false), ("+decay", "7 4", true, false)];
        let detection = [("+change", "2 3", false, true)];
        let chosen = variants.iter().chain(detection.iter().filter(|_| watched));
        for &(suffix, dash, decayed, detects) in chosen {
            let params = StrategyParams {
                decay: if decayed {
                    Decay::HalfLife {
                        observations: opts.half_life,
                    }
                } else {
                    Decay::None
                },
                change: detects.then(ChangeParams::default),
                min_share: if opts.min_share > 0.0 {
                    vec![opts.min_share; arms]
                } else {
                    Vec::new()
                },
                ..StrategyParams::new(algorithm)
            };
            let strategy = Strategy::new(params, arms).map_err(|e| e.to_string())?;
            players.push(Player {
                name: format!("{name}{suffix}"),
                strategy: Some(strategy),
                color,
                dash,
            });
        }
    }
    Ok(players)
}

/// What one run gives.
pub struct Run {
    /// Cumulative pseudo-regret at every `every` steps (and the last step).
    pub curve: Vec<f64>,
    /// Share of the decisions `--window` steps after the change that chose the new best arm.
    pub new_best_share: Option<f64>,
    /// Change-detection alarms.
    pub alarms: u64,
}

/// One run: `select` every step; rewards folded in by `update` at once, or `batch` at a time.
pub fn run(
    player: &Player,
    scenario: &Scenario,
    opts: &Options,
    every: u64,
    seed: u64,
) -> Result<Run, String> {
    let steps = opts.steps;
    let names: Vec<String> = (0..scenario.before.len())
        .map(|i| format!("arm{i}"))
        .collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut select_rng = Rng::seed_from_u64(seed);
    let mut reward_rng = Rng::seed_from_u64(seed ^ 0xA5A5_A5A5_A5A5_A5A5);
    let mut state = player.strategy.as_ref().map(|s| s.initial_state(&names));
    let mut pending: Vec<(usize, f64)> = Vec::with_capacity(scenario.batch);
    let change = scenario.after.as_ref().map(|_| steps / 2);
    let (from, to) = opts.window;
    let window = change.map(|c| (c + from)..(c + to).min(steps));
    let (mut on_best, mut in_window) = (0u64, 0u64);
    let mut out = Run {
        curve: vec![0.0],
        new_best_share: None,
        alarms: 0,
    };
    let mut cumulative = 0.0;
    for t in 0..steps {
        let arms = scenario.arms(t, steps);
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
        if window.as_ref().is_some_and(|w| w.contains(&t)) {
            in_window += 1;
            on_best += u64::from(arm.mean() >= best);
        }
        pending.push((choice, arm.draw(&mut reward_rng)));
        if pending.len() >= scenario.batch {
            if let (Some(s), Some(st)) = (&player.strategy, &mut state) {
                out.alarms +=
                    apply(s, st, &pending).map_err(|e| format!("{}: {e}", player.name))?;
            }
            pending.clear();
        }
        if (t + 1) % every == 0 || t + 1 == steps {
            out.curve.push(cumulative);
        }
    }
    if in_window > 0 {
        out.new_best_share = Some(on_best as f64 / in_window as f64);
    }
    Ok(out)
}

/// Folds rewards in, in order; the number of alarms they raised.
fn apply(s: &Strategy, st: &mut ModelState, rewards: &[(usize, f64)]) -> Result<u64, String> {
    let mut alarms = 0;
    for &(arm, reward) in rewards {
        let alarm = s
            .update_watched(st, arm, None, reward)
            .map_err(|e| e.to_string())?;
        alarms += u64::from(alarm.is_some());
    }
    Ok(alarms)
}

/// A player's results on a scenario over all runs.
pub struct Series {
    pub name: String,
    pub color: &'static str,
    pub dash: &'static str,
    /// Mean cumulative regret at each sampled step.
    pub mean: Vec<f64>,
    /// Standard deviation over runs of the final regret.
    pub final_sd: f64,
    /// Mean over runs of the share on the new best (scenarios with a change), and the
    /// lowest share but 1% of runs.
    pub new_best_share: Option<f64>,
    pub new_best_p01: Option<f64>,
    /// Runs with at least one alarm, and alarms per run.
    pub runs_alarmed: u64,
    pub alarms_per_run: f64,
}

pub fn simulate(opts: &Options, scenario: &Scenario, every: u64) -> Result<Vec<Series>, String> {
    let mut series = Vec::new();
    for player in players(opts, scenario.before.len())? {
        let mut sum: Vec<f64> = Vec::new();
        let mut finals = Vec::new();
        let mut shares = Vec::new();
        let (mut runs_alarmed, mut alarms) = (0, 0);
        for r in 0..opts.runs {
            let seed = opts.seed.wrapping_mul(1_000_003).wrapping_add(r);
            let run = run(&player, scenario, opts, every, seed)?;
            if sum.is_empty() {
                sum = vec![0.0; run.curve.len()];
            }
            for (acc, v) in sum.iter_mut().zip(&run.curve) {
                *acc += v;
            }
            finals.push(run.curve.last().copied().unwrap_or(0.0));
            shares.extend(run.new_best_share);
            runs_alarmed += u64::from(run.alarms > 0);
            alarms += run.alarms;
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
            dash: player.dash,
            mean: sum.iter().map(|s| s / n).collect(),
            final_sd: var.sqrt(),
            new_best_share: (!shares.is_empty())
                .then(|| shares.iter().sum::<f64>() / shares.len() as f64),
            new_best_p01: percentile(&mut shares, 0.01),
            runs_alarmed,
            alarms_per_run: alarms as f64 / n,
        });
    }
    Ok(series)
}

/// The `q`-quantile (lower) of `values`; `None` when empty.
fn percentile(values: &mut [f64], q: f64) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let at = ((values.len() as f64 - 1.0) * q).floor();
    values.get(at as usize).copied()
}
