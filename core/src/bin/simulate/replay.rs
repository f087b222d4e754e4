//! `simulate --replay <csv>`: routes each prompt of a RouteLLM per-prompt results file (GPT-4 vs
//! Mixtral, docs/learning/replay.md) in file order through the library's own strategies, and
//! draws quality against cost for a sweep of the cost weight λ.
//!
//! ```text
//! simulate --replay <file.csv> --out <dir> [--runs 5] [--seed 1] [--alpha 1]
//!          [--lambdas 0,0.02,...] [--keep-contaminated]
//! ```
//!
//! Per prompt the strategy picks `strong` or `weak`; the reward is
//! `(correctness − λ · relative cost + λ) / (1 + λ)`: correctness − λ · cost moved into
//! `[0, 1]` (the affine map changes no preference). Relative cost: GPT-4 1, Mixtral 0.24 / 24.7
//! (the paper's prices, $ per million tokens). Correctness is the 0/1 column for MMLU and GSM8K;
//! an MT-Bench judge score `s` (1–10, mean of both turns) counts `(s − 1) / 9`, and its quality is
//! reported as the mean score. Rows flagged `contaminated` are left out, as the paper does.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use inference_router_core::bandit::context::tokens;
use inference_router_core::bandit::{
    Algorithm, Context, Feature, ModelState, Strategy, StrategyParams,
};
use inference_router_core::rng::Rng;

#[path = "replay_svg.rs"]
mod replay_svg;

/// Mixtral's price relative to GPT-4's: $0.24 vs $24.7 per million tokens (RouteLLM §5.4).
const WEAK_COST: f64 = 0.24 / 24.7;
const STRONG: usize = 0;
const WEAK: usize = 1;

pub const USAGE: &str = "usage: simulate --replay <routellm.csv> --out <dir> [--runs N (5)] \
[--seed N (1)] [--alpha A (1, as configured by default)] [--lambdas L,L,... (0 to 0.4 by 0.02)] [--keep-contaminated]";

struct Options {
    csv: PathBuf,
    out: PathBuf,
    runs: u64,
    seed: u64,
    alpha: f64,
    lambdas: Vec<f64>,
    keep_contaminated: bool,
}

/// One prompt: both models' correctness in `[0, 1]`, their quality as reported, and its length.
#[derive(Clone, Copy)]
pub struct Prompt {
    pub correct: [f64; 2],
    pub quality: [f64; 2],
    pub chars: u64,
}

/// A benchmark file: its name, prompts in file order, and how its quality is labelled.
pub struct Bench {
    pub name: String,
    pub prompts: Vec<Prompt>,
    /// MT-Bench scores (1–10) rather than accuracy (%).
    pub scores: bool,
}

fn parse_args(args: &[String]) -> Result<Option<Options>, String> {
    let mut opts = Options {
        csv: PathBuf::new(),
        out: PathBuf::new(),
        runs: 5,
        seed: 1,
        alpha: 1.0,
        lambdas: (0..=20).map(|i| f64::from(i) * 0.02).collect(),
        keep_contaminated: false,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--keep-contaminated" => {
                opts.keep_contaminated = true;
                continue;
            }
            _ => {}
        }
        let value = it.next().ok_or_else(|| format!("{flag}: missing value"))?;
        let real = |v: &str| -> Result<f64, String> {
            v.parse::<f64>()
                .ok()
                .filter(|x| x.is_finite() && *x >= 0.0)
                .ok_or_else(|| format!("{flag}: expected a number of at least 0, got {v:?}"))
        };
        let whole = |v: &str| -> Result<u64, String> {
            v.parse::<u64>()
                .map_err(|_| format!("{flag}: expected a whole number, got {v:?}"))
        };
        match flag.as_str() {
            "--replay" => opts.csv = PathBuf::from(value),
            "--out" => opts.out = PathBuf::from(value),
            "--runs" => opts.runs = whole(value)?.max(1),
            "--seed" => opts.seed = whole(value)?,
            "--alpha" => opts.alpha = real(value)?,
            "--lambdas" => {
                opts.lambdas = value.split(',').map(real).collect::<Result<_, _>>()?;
            }
            _ => return Err(format!("unknown argument {flag:?}")),
        }
    }
    if opts.csv.as_os_str().is_empty() || opts.out.as_os_str().is_empty() {
        return Err("--replay and --out are required".into());
    }
    if opts.lambdas.is_empty() {
        return Err("--lambdas: at least one value".into());
    }
    Ok(Some(opts))
}

/// Reads a RouteLLM file (`mmlu.csv`, `gsm8k.csv` or `mt_bench.csv`, by its header).
pub fn read_bench(path: &Path, keep_contaminated: bool) -> Result<Bench, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .ok_or_else(|| format!("{}: no column {name:?}", path.display()))
    };
    let scores = header.contains(&"strong_score");
    let (s, w) = if scores {
        (col("strong_score")?, col("weak_score")?)
    } else {
        (col("strong_correct")?, col("weak_correct")?)
    };
    let (chars, contaminated, bench) = (
        col("prompt_chars")?,
        col("contaminated")?,
        col("benchmark")?,
    );
    let mut prompts = Vec::new();
    let mut name = String::new();
    for (i, line) in lines.enumerate() {
        let cells: Vec<&str> = line.split(',').collect();
        let cell = |c: usize| cells.get(c).copied().unwrap_or_default();
        let number = |c: usize| {
            cell(c)
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite())
                .ok_or_else(|| {
                    format!(
                        "{}: row {}: column {c} is not a number",
                        path.display(),
                        i + 2
                    )
                })
        };
        if cell(contaminated) == "1" && !keep_contaminated {
            continue;
        }
        name = cell(bench).to_owned();
        let quality = [number(s)?, number(w)?];
        let correct = if scores {
            quality.map(|q| ((q - 1.0) / 9.0).clamp(0.0, 1.0))
        } else {
            quality
        };
        let quality = if scores {
            quality
        } else {
            quality.map(|q| 100.0 * q)
        };
        let chars = cell(chars).parse::<u64>().unwrap_or(0);
        prompts.push(Prompt {
            correct,
            quality,
            chars,
        });
    }
    if prompts.is_empty() {
        return Err(format!("{}: no prompts", path.display()));
    }
    Ok(Bench {
        name,
        prompts,
        scores,
    })
}

/// Where one routing of the whole file landed: share of prompts sent to GPT-4, mean quality.
#[derive(Clone, Copy, Debug, Default)]
pub struct Point {
    pub strong_share: f64,
    pub quality: f64,
}

/// The reward for `arm` on `p` under cost weight `lambda`, in `[0, 1]`.
pub fn reward(p: &Prompt, arm: usize, lambda: f64) -> f64 {
    let cost = if arm == STRONG { 1.0 } else { WEAK_COST };
    let correct = p.correct.get(arm).copied().unwrap_or(0.0);
    ((correct - lambda * cost + lambda) / (1.0 + lambda)).clamp(0.0, 1.0)
}

/// The features the file offers a router: the prompt's length, as the filter estimates tokens.
fn context(p: &Prompt) -> Context {
    Context::from_values(&[tokens(p.chars.div_ceil(4))])
}

/// Routes every prompt in order with `strategy`, learning from each reward at once.
pub fn route(bench: &Bench, strategy: &Strategy, lambda: f64, seed: u64) -> Point {
    let mut state: ModelState = strategy.initial_state(&["strong", "weak"]);
    let mut rng = Rng::seed_from_u64(seed);
    let (mut strong, mut quality) = (0u64, 0.0);
    for p in &bench.prompts {
        let c = context(p);
        let arm = strategy.select_in(&state, Some(&c), &mut rng);
        let _ = strategy.update_in(&mut state, arm, Some(&c), reward(p, arm, lambda));
        strong += u64::from(arm == STRONG);
        quality += p.quality.get(arm).copied().unwrap_or(0.0);
    }
    let n = bench.prompts.len() as f64;
    Point {
        strong_share: strong as f64 / n,
        quality: quality / n,
    }
}

/// Always one model.
fn fixed(bench: &Bench, arm: usize) -> Point {
    let n = bench.prompts.len() as f64;
    let q: f64 = bench
        .prompts
        .iter()
        .filter_map(|p| p.quality.get(arm))
        .sum();
    Point {
        strong_share: if arm == STRONG { 1.0 } else { 0.0 },
        quality: q / n,
    }
}

/// Per prompt, the cheaper model unless only GPT-4 does better.
fn oracle(bench: &Bench) -> Point {
    let n = bench.prompts.len() as f64;
    let (mut strong, mut q) = (0u64, 0.0);
    for p in &bench.prompts {
        let arm = if p.correct[STRONG] > p.correct[WEAK] {
            STRONG
        } else {
            WEAK
        };
        strong += u64::from(arm == STRONG);
        q += p.quality.get(arm).copied().unwrap_or(0.0);
    }
    Point {
        strong_share: strong as f64 / n,
        quality: q / n,
    }
}

/// The best router that sees only the prompt's length, in hindsight: prompts split into ten
/// length deciles, the deciles where GPT-4 gains most sent to GPT-4 first. One point per number
/// of deciles sent (0 to 10): a ceiling for what the length can tell, not a learnable router.
fn length_deciles(bench: &Bench) -> Vec<Point> {
    let mut by_len: Vec<&Prompt> = bench.prompts.iter().collect();
    by_len.sort_by_key(|p| p.chars);
    let n = by_len.len();
    let mut deciles: Vec<(f64, f64, usize)> = (0..10)
        .map(|k| {
            let part = by_len.get(k * n / 10..(k + 1) * n / 10).unwrap_or_default();
            let gain: f64 = part
                .iter()
                .map(|p| p.quality[STRONG] - p.quality[WEAK])
                .sum();
            (gain / part.len().max(1) as f64, gain, part.len())
        })
        .collect();
    deciles.sort_by(|a, b| b.0.total_cmp(&a.0));
    let weak = fixed(bench, WEAK);
    let mut point = weak;
    let mut out = vec![weak];
    for (_, gain, len) in deciles {
        point.strong_share += len as f64 / n as f64;
        point.quality += gain / n as f64;
        out.push(point);
    }
    out
}

/// RouteLLM's best router at CPT(50%), as the paper publishes it (arXiv:2406.18665v4,
/// Tables 1–3 and §5.1): (share of GPT-4 calls, score). Not recomputed here.
fn published(bench: &str) -> Option<(Point, &'static str)> {
    let (share, quality, label) = match bench {
        "mmlu" => (0.3540, 75.0, "RouteLLM SW ranking, CPT(50%) (published)"),
        "gsm8k" => (0.3364, 75.0, "RouteLLM causal LLM, CPT(50%) (published)"),
        "mt_bench" => (0.1340, 8.8, "RouteLLM matrix fact., CPT(50%) (published)"),
        _ => return None,
    };
    Some((
        Point {
            strong_share: share,
            quality,
        },
        label,
    ))
}

/// The strategies replayed: context-free Thompson and LinUCB on the prompt length.
fn strategies(alpha: f64) -> Result<Vec<(&'static str, Strategy)>, String> {
    let thompson = Strategy::new(StrategyParams::new(Algorithm::Thompson), 2);
    let mut linucb = StrategyParams::new(Algorithm::LinUcb { alpha, ridge: 1.0 });
    linucb.features = vec![Feature::PromptTokens];
    let linucb = Strategy::new(linucb, 2);
    Ok(vec![
        ("thompson", thompson.map_err(|e| e.to_string())?),
        ("linucb", linucb.map_err(|e| e.to_string())?),
    ])
}

/// One strategy's curve: a point per λ, averaged over runs.
pub struct Curve {
    pub name: &'static str,
    pub points: Vec<(f64, Point)>,
}

/// How far a point is above the random mix of the two models at the same cost.
pub fn above_mix(p: Point, strong: Point, weak: Point) -> f64 {
    p.quality - (weak.quality + p.strong_share * (strong.quality - weak.quality))
}

pub fn main(args: &[String]) -> Result<(), String> {
    let Some(opts) = parse_args(args)? else {
        println!("{USAGE}");
        return Ok(());
    };
    let started = std::time::Instant::now();
    let bench = read_bench(&opts.csv, opts.keep_contaminated)?;
    let mut curves = Vec::new();
    for (name, strategy) in strategies(opts.alpha)? {
        let mut points = Vec::new();
        for &lambda in &opts.lambdas {
            let mut sum = Point::default();
            for run in 0..opts.runs {
                let p = route(&bench, &strategy, lambda, opts.seed.wrapping_add(run));
                sum.strong_share += p.strong_share / opts.runs as f64;
                sum.quality += p.quality / opts.runs as f64;
            }
            points.push((lambda, sum));
        }
        curves.push(Curve { name, points });
    }
    let (strong, weak, best) = (fixed(&bench, STRONG), fixed(&bench, WEAK), oracle(&bench));
    let theirs = published(&bench.name);
    let deciles = length_deciles(&bench);
    std::fs::create_dir_all(&opts.out).map_err(|e| format!("{}: {e}", opts.out.display()))?;
    let stem = format!("replay-{}", bench.name);
    let mut csv = String::from("strategy,lambda,strong_share,quality,above_mix\n");
    for c in &curves {
        for (l, p) in &c.points {
            let d = above_mix(*p, strong, weak);
            let _ = writeln!(
                csv,
                "{},{l},{:.4},{:.4},{d:.4}",
                c.name, p.strong_share, p.quality
            );
        }
    }
    for (name, p) in [
        ("always-strong", strong),
        ("always-weak", weak),
        ("oracle", best),
    ] {
        let _ = writeln!(
            csv,
            "{name},,{:.4},{:.4},{:.4}",
            p.strong_share,
            p.quality,
            above_mix(p, strong, weak)
        );
    }
    write(&opts.out.join(format!("{stem}.csv")), &csv)?;
    let plot = replay_svg::Plot {
        bench: &bench,
        curves: &curves,
        strong,
        weak,
        oracle: best,
        deciles: &deciles,
        published: theirs,
        runs: opts.runs,
        alpha: opts.alpha,
    };
    write(&opts.out.join(format!("{stem}.svg")), &plot.svg())?;
    report(&bench, &curves, strong, weak, best);
    let ceiling = (deciles.iter())
        .map(|p| above_mix(*p, strong, weak))
        .fold(f64::NEG_INFINITY, f64::max);
    println!("  by length decile, in hindsight: best {ceiling:+.3} above the mix");
    println!(
        "wrote {}/{stem}.{{csv,svg}} in {:.1}s",
        opts.out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn report(bench: &Bench, curves: &[Curve], strong: Point, weak: Point, best: Point) {
    let unit = if bench.scores { "score" } else { "accuracy %" };
    println!(
        "{}: {} prompts; always-strong {:.2}, always-weak {:.2}, oracle {:.2} at {:.1}% GPT-4 ({unit})",
        bench.name,
        bench.prompts.len(),
        strong.quality,
        weak.quality,
        best.quality,
        100.0 * best.strong_share
    );
    for c in curves {
        let gains: Vec<f64> = c
            .points
            .iter()
            .map(|(_, p)| above_mix(*p, strong, weak))
            .collect();
        let max = gains.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let mean = gains.iter().sum::<f64>() / gains.len().max(1) as f64;
        println!(
            "  {:<9} quality above the random mix at the same GPT-4 share: mean {mean:+.3}, best {max:+.3} ({unit})",
            c.name
        );
        for (l, p) in &c.points {
            println!(
                "    λ {l:<5} GPT-4 {:>5.1}%  quality {:>6.2}  above mix {:+.3}",
                100.0 * p.strong_share,
                p.quality,
                above_mix(*p, strong, weak)
            );
        }
    }
}

fn write(path: &Path, contents: &str) -> Result<(), String> {
    std::fs::write(path, contents).map_err(|e| format!("{}: {e}", path.display()))
}
