//! What the bench prints: number formats, the per-shape table, ckpt-watch's phase line, and the
//! straight-line fit behind the linearity check.

use std::time::Duration;

use super::measure::Stats;

/// "2.71 s", "61.2 ms", "840 µs": three significant figures, unit to match.
pub fn duration(d: Duration) -> String {
    let s = d.as_secs_f64();
    let (value, unit) = if s >= 1.0 {
        (s, "s")
    } else if s >= 1e-3 {
        (s * 1e3, "ms")
    } else {
        (s * 1e6, "µs")
    };
    let decimals = if value >= 100.0 {
        0
    } else if value >= 10.0 {
        1
    } else {
        2
    };
    format!("{value:.decimals$} {unit}")
}

/// 210456 → "210,456".
pub fn count(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn rss(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn rate(fds: usize, d: Duration) -> String {
    format!("{:.2} M fds/s", fds as f64 / d.as_secs_f64() / 1e6)
}

/// One table per shape; every ratio is against the first row (ckpt-watch --json).
pub fn table(rows: &[(&str, Stats)], fds: usize) {
    let base = rows[0].1.median.as_secs_f64();
    println!(
        "  {:<20} {:>9} {:>9}   {:<20} {:>10} {:>14}",
        "tool", "median", "min", "vs ckpt-watch --json", "peak RSS", "throughput"
    );
    for (i, (name, s)) in rows.iter().enumerate() {
        let ratio = if i == 0 {
            "baseline".to_string()
        } else {
            format!("= {:.1}× ckpt-watch", s.median.as_secs_f64() / base)
        };
        println!(
            "  {name:<20} {:>9} {:>9}   {ratio:<20} {:>10} {:>14}",
            duration(s.median),
            duration(s.min),
            rss(s.max_rss_kib),
            rate(fds, s.median),
        );
    }
}

/// ckpt-watch's `-v` timing line: the tracing event whose message is `scan`, ANSI colours
/// stripped (tracing-subscriber may colour even when stderr is not a terminal).
pub fn scan_line(stderr: &str) -> Option<String> {
    log_line(stderr, "scan btf=")
}

/// The `judged resolve=… judge=…` line: resolving ops tables and judging every workload.
pub fn judged_line(stderr: &str) -> Option<String> {
    log_line(stderr, "judged resolve=")
}

/// The first log line holding `start`, from there on, without colours.
fn log_line(stderr: &str, start: &str) -> Option<String> {
    stderr.lines().map(strip_ansi).find_map(|line| {
        let at = line.find(start)?;
        Some(line[at..].to_string())
    })
}

fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // CSI: ESC [ parameters... final byte in @..~
            chars.by_ref().skip(1).find(|c| ('@'..='~').contains(c));
        } else {
            out.push(c);
        }
    }
    out
}

/// A `key=1.23ms` field of the scan line (Rust's `Debug` for `Duration`).
pub fn phase(line: &str, key: &str) -> Option<Duration> {
    let value = line
        .split_whitespace()
        .find_map(|f| f.strip_prefix(key)?.strip_prefix('='))?;
    // Longest suffixes first: "ms", "µs" and "ns" all end in "s".
    let (number, scale) = [("ns", 1e-9), ("µs", 1e-6), ("ms", 1e-3), ("s", 1.0)]
        .into_iter()
        .find_map(|(unit, scale)| Some((value.strip_suffix(unit)?, scale)))?;
    Some(Duration::from_secs_f64(number.parse::<f64>().ok()? * scale))
}

/// Least squares t = fixed + per_fd · fds.
pub struct Fit {
    pub fixed: f64,
    pub per_fd: f64,
    pub r2: f64,
}

impl Fit {
    /// `points` are (fds, seconds); needs two distinct fd counts.
    pub fn of(points: &[(f64, f64)]) -> Option<Fit> {
        let n = points.len() as f64;
        let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
        let my = points.iter().map(|p| p.1).sum::<f64>() / n;
        let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
        let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
        let syy: f64 = points.iter().map(|p| (p.1 - my).powi(2)).sum();
        if sxx == 0.0 {
            return None;
        }
        let per_fd = sxy / sxx;
        let r2 = if syy == 0.0 {
            1.0
        } else {
            sxy * sxy / (sxx * syy)
        };
        Some(Fit {
            fixed: my - per_fd * mx,
            per_fd,
            r2,
        })
    }

    pub fn predict(&self, fds: usize) -> Duration {
        Duration::from_secs_f64((self.fixed + self.per_fd * fds as f64).max(0.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(duration(Duration::from_millis(2710)), "2.71 s");
        assert_eq!(duration(Duration::from_micros(61_240)), "61.2 ms");
        assert_eq!(duration(Duration::from_micros(840)), "840 µs");
        assert_eq!(count(210_456), "210,456");
        assert_eq!(count(999), "999");
    }

    #[test]
    fn finds_the_scan_line_and_its_phases() {
        let stderr = "\x1b[34mDEBUG\x1b[0m \x1b[2mckpt_user::run\x1b[0m\x1b[2m:\x1b[0m scan \
                      \x1b[3mbtf\x1b[0m\x1b[2m=\x1b[0m1.5ms \x1b[3miterate\x1b[0m\x1b[2m=\x1b[0m53.2µs files=7\n";
        let line = scan_line(stderr).unwrap();
        assert_eq!(line, "scan btf=1.5ms iterate=53.2µs files=7");
        assert_eq!(phase(&line, "btf"), Some(Duration::from_micros(1500)));
        assert_eq!(phase(&line, "iterate"), Some(Duration::from_nanos(53_200)));
        assert_eq!(phase(&line, "load"), None);
        let stderr = "DEBUG ckpt_user::cmd::scan: judged resolve=338.1µs index=12.5ms judge=160.5ms workloads=2\n";
        let line = judged_line(stderr).unwrap();
        assert_eq!(phase(&line, "index"), Some(Duration::from_micros(12_500)));
        assert_eq!(phase(&line, "judge"), Some(Duration::from_micros(160_500)));
    }

    #[test]
    fn fits_a_line() {
        let fit = Fit::of(&[(100.0, 1.1), (200.0, 1.2), (300.0, 1.3)]).unwrap();
        assert!((fit.per_fd - 0.001).abs() < 1e-12 && (fit.fixed - 1.0).abs() < 1e-9);
        assert!((fit.r2 - 1.0).abs() < 1e-9);
    }
}
