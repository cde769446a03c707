//! `oftp check-config`: validates a configuration and every certificate it names, without
//! starting anything (no listener, no call, no journal), and prints what `oftp serve` would
//! do with it. Every problem found is listed; the exit code is 1 if there is any.
//!
//! A file that is not valid TOML, or has an unknown key or a value of the wrong type, stops
//! at that first problem (the TOML reader cannot go on); every later check (each partner's
//! schedule and retry settings, our certificates, each partner's certificates, the TLS
//! listener's identity) is run on its own, so one bad partner does not hide another.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use chrono::{DateTime, Utc};
use clap::Args;
use oftp::security::SecurityContext;
use oftp_gateway::Schedule;
use serde::Serialize;

use crate::{config, security};

/// Calls of a schedule shown.
const NEXT_CALLS: usize = 3;

/// `oftp check-config`.
#[derive(Args, Debug)]
pub(crate) struct CheckArgs {
    /// Configuration file (default: ./oftp-data/oftp.toml).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Machine-readable output (JSON).
    #[arg(long)]
    json: bool,
}

/// What `check-config` found.
#[derive(Debug, Serialize)]
struct Report {
    config: PathBuf,
    /// Every problem, for a person.
    problems: Vec<String>,
    /// What the daemon would do (when the file could be read).
    plan: Option<Plan>,
}

#[derive(Debug, Serialize)]
struct Plan {
    data_dir: PathBuf,
    control_socket: PathBuf,
    listeners: Vec<String>,
    partners: Vec<PartnerPlanView>,
}

#[derive(Debug, Serialize)]
struct PartnerPlanView {
    name: String,
    /// Where we call it; `None` = it calls us.
    address: Option<String>,
    call_on_new_file: bool,
    /// The schedule, for a person (`every 240 min; 30 6 * * MON-FRI (Europe/Berlin)`).
    schedule: Option<String>,
    /// The next scheduled calls from now (empty: no schedule).
    next_calls: Vec<DateTime<Utc>>,
    outbox: PathBuf,
    tls: bool,
    required_security: String,
    secure_authentication: String,
}

pub(crate) fn check_config(a: &CheckArgs) -> Result<ExitCode> {
    let path = a
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from(config::DEFAULT_CONFIG));
    let report = check(&path, Utc::now());
    let mut out = std::io::stdout().lock();
    if a.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        out.write_all(text(&report).as_bytes())?;
    }
    out.flush()?;
    Ok(if report.problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn check(path: &Path, now: DateTime<Utc>) -> Report {
    let mut problems = Vec::new();
    let report = |problems, plan| Report {
        config: path.to_owned(),
        problems,
        plan,
    };
    let file: config::FileConfig = match std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read configuration {}: {e}", path.display()))
        .and_then(|text| {
            toml::from_str(&text).map_err(|e| {
                format!(
                    "invalid configuration {}: {e}(fix this and run check-config again for \
                     the checks after it)",
                    path.display()
                )
            })
        }) {
        Ok(f) => f,
        Err(p) => return report(vec![p], None),
    };
    for entry in &file.partners {
        if let Err(e) = entry.gateway.check() {
            problems.push(format!(
                "{}: [[partners]] {:?}: {e}",
                path.display(),
                entry.partner.name
            ));
        }
    }
    let loaded = match config::load(path) {
        Ok(l) => l,
        Err(e) => {
            let e = format!("{e:#}");
            if !problems
                .iter()
                .any(|p| e.contains(p.as_str()) || p.contains(&e))
            {
                problems.push(e);
            }
            return report(problems, None);
        }
    };
    let f = &loaded.file;
    // Our certificates once, then each partner's on its own.
    let work_dir = loaded.data_dir.join("security");
    match SecurityContext::builder(f.local.sfid(), &f.security, work_dir.clone()) {
        Err(e) => problems.push(format!("{}: [security]: {e}", path.display())),
        Ok(_) => {
            for p in loaded.partners.iter() {
                let built = SecurityContext::builder(f.local.sfid(), &f.security, work_dir.clone())
                    .and_then(|b| b.partner(&p.name, &p.ssid, p.sfid(), &p.security));
                if let Err(e) = built {
                    problems.push(format!(
                        "{}: [[partners]] {:?} security: {e}",
                        path.display(),
                        p.name
                    ));
                }
            }
        }
    }
    let mut listeners = Vec::new();
    if !f.tls.enabled || f.tls.plain {
        listeners.push(format!("OFTP on {}", f.server.listen));
    }
    if f.tls.enabled {
        listeners.push(format!("OFTP over TLS on {}", f.tls.listen));
        if problems.is_empty() {
            let tls = security::context(
                f.local.sfid(),
                &f.security,
                loaded.partners.iter(),
                &loaded.data_dir,
            )
            .and_then(|sec| security::acceptor(&f.security, &f.tls, &sec));
            if let Err(e) = tls {
                problems.push(format!("{}: [tls]: {e:#}", path.display()));
            }
        }
    }
    let partners = f
        .partners
        .iter()
        .map(|e| {
            let schedule = e
                .gateway
                .schedule
                .as_ref()
                .and_then(|c| Schedule::try_from(c).ok());
            let next_calls = schedule
                .as_ref()
                .map(|s| {
                    std::iter::successors(s.next_after(now), |t| s.next_after(*t))
                        .take(NEXT_CALLS)
                        .collect()
                })
                .unwrap_or_default();
            PartnerPlanView {
                name: e.partner.name.clone(),
                address: e.partner.address.clone(),
                call_on_new_file: e.gateway.call_on_new_file,
                schedule: schedule.map(|s| s.to_string()),
                next_calls,
                outbox: e
                    .partner
                    .outbox
                    .clone()
                    .unwrap_or_else(|| loaded.data_dir.join("outbox").join(&e.partner.name)),
                tls: e.partner.tls.enabled,
                required_security: format!("{:?}", e.partner.security.required_security)
                    .to_lowercase(),
                secure_authentication: format!("{:?}", e.partner.security.secure_authentication)
                    .to_lowercase(),
            }
        })
        .collect();
    let plan = Plan {
        control_socket: f.gateway.control.socket_path(&loaded.data_dir),
        data_dir: loaded.data_dir.clone(),
        listeners,
        partners,
    };
    report(problems, Some(plan))
}

fn text(r: &Report) -> String {
    let mut out = String::new();
    if let Some(p) = &r.plan {
        out.push_str(&format!(
            "{}: oftp serve would\n  keep its data in {}\n  answer operator commands on {}\n",
            r.config.display(),
            p.data_dir.display(),
            p.control_socket.display()
        ));
        for l in &p.listeners {
            out.push_str(&format!("  listen for {l}\n"));
        }
        out.push_str(&format!("  serve {} partners:\n", p.partners.len()));
        for partner in &p.partners {
            out.push_str(&format!("  - {}\n", partner.name));
            match &partner.address {
                Some(a) => out.push_str(&format!(
                    "      calls {a}{}{}\n",
                    if partner.tls { " over TLS" } else { "" },
                    if partner.call_on_new_file {
                        ", when a file arrives in its outbox"
                    } else {
                        ""
                    }
                )),
                None => out.push_str("      has no address: it calls us\n"),
            }
            match &partner.schedule {
                Some(s) => out.push_str(&format!("      schedule: {s}\n")),
                None => out.push_str("      no schedule\n"),
            }
            if !partner.next_calls.is_empty() {
                let times: Vec<String> = partner
                    .next_calls
                    .iter()
                    .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
                    .collect();
                out.push_str(&format!(
                    "      next scheduled calls: {}\n",
                    times.join(", ")
                ));
            }
            out.push_str(&format!(
                "      outbox {}\n      file security required: {}, secure authentication: {}\n",
                partner.outbox.display(),
                partner.required_security,
                partner.secure_authentication
            ));
        }
    }
    if r.problems.is_empty() {
        out.push_str("configuration OK\n");
    } else {
        out.push_str(&format!("{} problem(s):\n", r.problems.len()));
        for p in &r.problems {
            out.push_str(&format!("  - {p}\n"));
        }
    }
    out
}
