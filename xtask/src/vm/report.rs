//! Judges what the guests reported and prints the matrix: per kernel, the resolver's
//! findings, and the agreement tables of CRIU 3.17 (alone, and under runc) against ckpt-watch.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use super::qemu::Outcome;
use super::records::Record;

/// Lines of console shown for a guest that failed.
const CONSOLE_TAIL: usize = 40;

/// One guest's run, judged.
pub struct GuestReport {
    pub kernel: String,
    pub outcome: Outcome,
    pub records: Vec<Record>,
    /// Failures, each one line (the console tail follows them when the guest itself failed).
    pub failures: Vec<String>,
    /// Findings that are not failures (catalogue gaps, modules the kernel lacks).
    pub notes: Vec<String>,
}

impl GuestReport {
    /// `backends`: those the daemon suite was asked to run with; each must have run.
    pub fn judge(
        kernel: &str,
        outcome: Outcome,
        missing_modules: &[String],
        backends: &[&str],
    ) -> Self {
        let mut report = GuestReport {
            kernel: kernel.into(),
            records: parse(&outcome.records),
            outcome,
            failures: Vec::new(),
            notes: Vec::new(),
        };
        if !missing_modules.is_empty() {
            report.notes.push(format!(
                "modules not found as files (built in, or absent): {}",
                missing_modules.join(" ")
            ));
        }
        report.judge_guest();
        report.judge_records();
        report.judge_daemon_suite(backends);
        report
    }

    /// A guest that hung or died is reported with its console's last lines; one whose runner
    /// exited non-zero has its reasons in the records.
    fn judge_guest(&mut self) {
        let o = &self.outcome;
        let died = match o.code {
            _ if o.timed_out => Some(format!("hung: killed after {:.0?}", o.elapsed)),
            None => Some("died without an exit code (panic or crash)".to_string()),
            Some(_) => None,
        };
        if let Some(why) = died {
            let tail = o.console_tail(CONSOLE_TAIL);
            self.failures.push(format!("{why}; console tail:\n{tail}"));
        } else if let Some(code) = o.code.filter(|&c| c != 0) {
            self.failures
                .push(format!("the guest runner exited {code}"));
        }
        if !self
            .records
            .iter()
            .any(|r| matches!(r, Record::Guest { .. }))
        {
            self.failures.push("the guest reported nothing".into());
        }
    }

    /// Failures are grouped by message, so that one finding met on every case (the pipe on
    /// every subject's stdout, a scanner that cannot load) is one line with its cases.
    fn judge_records(&mut self) {
        let mut gaps = BTreeSet::new();
        let mut found: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for record in &self.records {
            let (case, message) = match record {
                Record::Resolve {
                    case,
                    fd,
                    live,
                    members,
                    by_data_symbol,
                    expected,
                    ..
                } => {
                    // `~function`: the catalogue has no entry; `0x…`: a table with no member
                    // set (empty_fops), which only its data symbol can name.
                    let unnamed = members.starts_with('~') || members.starts_with("0x");
                    if unnamed && *by_data_symbol {
                        gaps.insert(format!("{live} ({members})"));
                    }
                    let Some(message) = resolve_failure(
                        live,
                        members,
                        *by_data_symbol,
                        expected.as_deref(),
                        unnamed,
                    ) else {
                        continue;
                    };
                    (format!("{case} fd {fd}"), message)
                }
                Record::Oracle {
                    case,
                    criu,
                    error,
                    verdict,
                    reasons,
                    agree: false,
                    ..
                } => (
                    case.clone(),
                    format!(
                        "CRIU 3.17 {criu} ({error}); ckpt-watch {verdict} ({})",
                        reasons.join("; ")
                    ),
                ),
                Record::Hook {
                    case,
                    dumped,
                    verdict,
                    error,
                    seized_before_verdict,
                    agree: false,
                } => (
                    format!("{case} with criu-hook"),
                    format!(
                        "CRIU 3.17 {} ({error}); hook: {verdict}{}",
                        if *dumped { "dumped" } else { "failed" },
                        if *seized_before_verdict {
                            "; CRIU seized the tree before the hook judged it"
                        } else {
                            ""
                        }
                    ),
                ),
                Record::Container {
                    scenario,
                    runc,
                    error,
                    verdict,
                    options,
                    reasons,
                    failed,
                    agree: false,
                    ..
                } => (
                    format!("container {scenario}"),
                    format!(
                        "runc checkpoint {runc} ({error}{}); ckpt-watch preflight {} ({})",
                        failed.iter().map(|f| format!("; {f}")).collect::<String>(),
                        with_options(verdict, options),
                        reasons.join("; ")
                    ),
                ),
                Record::Daemon {
                    backend,
                    test,
                    passed: false,
                    output,
                } => (
                    format!("{backend} backend"),
                    format!("daemon test {test} failed:\n{}", digits_elided(output)),
                ),
                Record::Error { case, what } => (case.clone(), digits_elided(what)),
                _ => continue,
            };
            found.entry(message).or_default().push(case);
        }
        for (message, cases) in found {
            self.failures
                .push(format!("{message} [{}]", some_of(&cases)));
        }
        if !gaps.is_empty() {
            let gaps: Vec<String> = gaps.into_iter().collect();
            self.notes.push(format!(
                "tables the catalogue does not name: {}",
                gaps.join(", ")
            ));
        }
    }

    /// A backend with no passing daemon test did not run (its errors, if any, are already
    /// failures): a silent pass is impossible.
    fn judge_daemon_suite(&mut self, backends: &[&str]) {
        if self.outcome.code.is_none() || self.outcome.timed_out {
            return;
        }
        for backend in backends {
            let (passed, _) = self.daemon_tests(backend);
            if passed == 0 {
                self.failures.push(format!(
                    "the daemon suite passed no test on the {backend} backend"
                ));
            }
        }
    }

    /// (passed, run) daemon tests on `backend`.
    fn daemon_tests(&self, backend: &str) -> (usize, usize) {
        self.records
            .iter()
            .filter_map(|r| match r {
                Record::Daemon {
                    backend: b, passed, ..
                } if b == backend => Some(*passed),
                _ => None,
            })
            .fold((0, 0), |(p, n), ok| (p + usize::from(ok), n + 1))
    }

    /// The guest's own facts line.
    pub fn headline(&self) -> String {
        let guest = self.records.iter().find_map(|r| match r {
            Record::Guest {
                release,
                backends,
                zoo_fs,
            } => {
                let suites: Vec<String> = backends
                    .iter()
                    .map(|b| {
                        let (passed, run) = self.daemon_tests(b);
                        format!("{b} {passed}/{run}")
                    })
                    .collect();
                Some(format!(
                    "{release}, zoo on {zoo_fs}, daemon tests passed: {}",
                    suites.join(", ")
                ))
            }
            _ => None,
        });
        let count = |f: fn(&Record) -> bool| self.records.iter().filter(|r| f(r)).count();
        let took: Vec<String> = self
            .records
            .iter()
            .filter_map(|r| match r {
                Record::Took { suite, secs } => Some(format!("{suite} {secs}s")),
                _ => None,
            })
            .collect();
        format!(
            "{}: {} in {:.0?} ({}); {} fds resolved, {} cases skipped, {} oracle cases, {} hook dumps, {} containers; {}",
            self.kernel,
            guest.unwrap_or_else(|| "no guest record".into()),
            self.outcome.elapsed,
            took.join(", "),
            count(|r| matches!(r, Record::Resolve { .. })),
            count(|r| matches!(r, Record::Skip { .. })),
            count(|r| matches!(r, Record::Oracle { .. })),
            count(|r| matches!(r, Record::Hook { .. })),
            count(|r| matches!(r, Record::Container { .. })),
            if self.failures.is_empty() {
                "PASS".to_string()
            } else {
                format!("{} FAILURES", self.failures.len())
            },
        )
    }

    /// The agreement tables (markdown) of the oracle and the container suite, those this
    /// guest ran.
    pub fn agreement_table(&self) -> Option<String> {
        let tables: Vec<String> = [self.zoo_table(), self.container_table()]
            .into_iter()
            .flatten()
            .collect();
        (!tables.is_empty()).then(|| tables.join("\n"))
    }

    fn zoo_table(&self) -> Option<String> {
        let rows: Vec<&Record> = self
            .records
            .iter()
            .filter(|r| matches!(r, Record::Oracle { .. }))
            .collect();
        if rows.is_empty() {
            return None;
        }
        let mut out = format!(
            "CRIU 3.17 vs ckpt-watch --profile criu-3.17 on {}\n\n| case | criu 3.17 | ckpt-watch | agree? |\n|---|---|---|---|\n",
            self.kernel
        );
        for row in rows {
            if let Record::Oracle {
                case,
                criu,
                verdict,
                options,
                agree,
                ..
            } = row
            {
                let _ = writeln!(
                    out,
                    "| {case} | {criu} | {} | {} |",
                    with_options(verdict, options),
                    yes_no(*agree)
                );
            }
        }
        self.skipped(&mut out, |case| !case.starts_with("container "));
        Some(out)
    }

    fn container_table(&self) -> Option<String> {
        let rows: Vec<&Record> = self
            .records
            .iter()
            .filter(|r| matches!(r, Record::Container { .. }))
            .collect();
        if rows.is_empty() {
            return None;
        }
        let mut out = format!(
            "runc checkpoint (CRIU 3.17) vs ckpt-watch preflight --engine runc --profile criu-3.17 on {}\n\n\
             | scenario | runc checkpoint | CRIU's first error (plain checkpoint) | ckpt-watch | agree? |\n|---|---|---|---|---|\n",
            self.kernel
        );
        for row in rows {
            if let Record::Container {
                scenario,
                runc,
                via_config,
                error,
                verdict,
                options,
                agree,
                ..
            } = row
            {
                let how = if *via_config { " (runc.conf)" } else { "" };
                let _ = writeln!(
                    out,
                    "| {scenario} | {runc}{how} | {} | {} | {} |",
                    error.replace('|', "\\|"),
                    with_options(verdict, options),
                    yes_no(*agree)
                );
            }
        }
        self.skipped(&mut out, |case| case.starts_with("container "));
        Some(out)
    }

    /// The line naming the cases of a table this kernel could not create.
    fn skipped(&self, out: &mut String, of_table: fn(&str) -> bool) {
        let skipped: Vec<&str> = self
            .records
            .iter()
            .filter_map(|r| match r {
                Record::Skip { case, .. } if of_table(case) => Some(case.as_str()),
                _ => None,
            })
            .collect();
        if !skipped.is_empty() {
            let _ = writeln!(
                out,
                "\nnot creatable on this kernel: {}",
                skipped.join(", ")
            );
        }
    }
}

fn with_options(verdict: &str, options: &[String]) -> String {
    match options.is_empty() {
        true => verdict.to_string(),
        false => format!("{verdict} {}", options.join(" ")),
    }
}

fn yes_no(agree: bool) -> &'static str {
    if agree { "yes" } else { "NO" }
}

/// What is wrong with one fd's two names, if anything.
fn resolve_failure(
    live: &str,
    members: &str,
    by_data_symbol: bool,
    expected: Option<&[String]>,
    unnamed: bool,
) -> Option<String> {
    if let Some(names) = expected.filter(|n| !n.iter().any(|n| n == live)) {
        return Some(format!("named {live}, expected {}", names.join(" or ")));
    }
    if expected.is_some() && !by_data_symbol {
        return Some(format!("{live} was not found as a data symbol"));
    }
    (!unnamed && members != live)
        .then(|| format!("data symbol {live} but the catalogue says {members} (catalogue bug)"))
}

/// A message with its long numbers (pids, inodes) elided, so equal findings group together;
/// short ones (exit codes, versions) stay.
fn digits_elided(text: &str) -> String {
    let mut out = String::new();
    let mut run = String::new();
    for c in text.chars().chain(std::iter::once('\0')) {
        if c.is_ascii_digit() {
            run.push(c);
            continue;
        }
        out.push_str(if run.len() >= 3 { "N" } else { &run });
        run.clear();
        if c != '\0' {
            out.push(c);
        }
    }
    out
}

/// At most a few names, then how many more.
fn some_of(cases: &[String]) -> String {
    const SHOWN: usize = 6;
    match cases.len() {
        n if n <= SHOWN => cases.join(", "),
        n => format!("{}, and {} more", cases[..SHOWN].join(", "), n - SHOWN),
    }
}

/// The records port's lines; a line that does not parse (a guest cut short) is skipped, and
/// the missing exit code then fails the guest.
fn parse(text: &str) -> Vec<Record> {
    text.lines()
        .filter_map(|l| serde_json::from_str(l.trim()).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_container_disagreement_fails_the_guest_and_shows_in_its_table() {
        let container = |scenario: &str, verdict: &str, agree: bool| Record::Container {
            scenario: scenario.into(),
            runc: "needs --ghost-limit 2M".into(),
            via_config: true,
            error: "Error (criu/files-reg.c:950): a | b".into(),
            verdict: verdict.into(),
            options: vec![],
            reasons: vec!["why".into()],
            failed: vec![],
            agree,
        };
        let mut report = GuestReport {
            kernel: "6.1".into(),
            outcome: Outcome {
                code: Some(0),
                timed_out: false,
                records: String::new(),
                console: String::new(),
                elapsed: std::time::Duration::ZERO,
            },
            records: vec![
                container("deleted-big", "needs", true),
                container("memfd", "ok", false),
            ],
            failures: Vec::new(),
            notes: Vec::new(),
        };
        report.judge_records();
        assert_eq!(report.failures.len(), 1, "{:?}", report.failures);
        assert!(report.failures[0].ends_with("[container memfd]"));
        let table = report.agreement_table().expect("a table");
        assert!(table.contains(
            "| deleted-big | needs --ghost-limit 2M (runc.conf) | Error (criu/files-reg.c:950): a \\| b | needs | yes |"
        ));
        assert!(table.contains("| memfd |") && table.contains("| ok | NO |"));
    }

    #[test]
    fn names_must_agree_unless_the_catalogue_cannot_name_the_table() {
        let pinned = ["eventfd_fops".to_string()];
        assert_eq!(
            resolve_failure("eventfd_fops", "eventfd_fops", true, Some(&pinned), false),
            None
        );
        assert!(
            resolve_failure("eventfd_fops", "eventfd_fops", false, Some(&pinned), false).is_some()
        );
        assert!(resolve_failure("full_fops", "zero_fops", true, None, false).is_some());
        assert_eq!(
            resolve_failure(
                "shmem_file_operations",
                "~shmem_file_read_iter",
                true,
                None,
                true
            ),
            None
        );
    }

    #[test]
    fn numbers_are_elided_for_grouping() {
        assert_eq!(
            digits_elided("--pid 1240 failed (2) on 5.8"),
            "--pid N failed (2) on 5.8"
        );
    }
}
