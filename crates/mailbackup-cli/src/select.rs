//! The selection options `search`, `export` and `restore` share: one set of flags giving one
//! [`mailbackup::Selection`], which the index answers the same way for every command.
//!
//! Spellings of earlier versions stay accepted, hidden from `--help`: `export --after D` (the
//! same as `--created-from D`), `export --before D` (created before D: `--created-to` the day
//! before) and `export --key KEY` (`--message KEY`).

use anyhow::{Result, anyhow};
use chrono::NaiveDate;
use clap::Args;
use mailbackup::Selection;
use mailbackup::search::Query;

/// Which messages (all options combine; none selects everything).
#[derive(Args, Debug, Clone, Default)]
pub(crate) struct SelectArgs {
    /// Only this mailbox of the backup, as `status` lists it (`restore` needs it when the
    /// backup has several).
    #[arg(long)]
    mailbox: Option<String>,
    /// Only this folder and those below it (`Inbox`, `Inbox/Clients`), case-insensitive.
    #[arg(long)]
    folder: Option<String>,
    /// Only messages created on or after this day (UTC), yyyy/MM/dd or YYYY-MM-DD.
    #[arg(long, alias = "after", value_name = "DAY")]
    created_from: Option<String>,
    /// Only messages created on or before this day (UTC), yyyy/MM/dd or YYYY-MM-DD.
    #[arg(long, value_name = "DAY")]
    created_to: Option<String>,
    /// Earlier spelling: only messages created before this day.
    #[arg(long, value_name = "DAY", hide = true, conflicts_with = "created_to")]
    before: Option<String>,
    /// Only this message: its key (as `search` prints it, the path below the data folder) or
    /// its Graph id. Repeatable.
    #[arg(long = "message", alias = "key", value_name = "KEY_OR_ID")]
    messages: Vec<String>,
    /// Only messages matching this search query (the syntax of `mailbackup search`).
    #[arg(long, short = 'q')]
    query: Option<String>,
}

impl SelectArgs {
    /// The selection these options give, with `typed` (the words `search` takes) added to
    /// `--query`.
    pub(crate) fn selection(&self, typed: &str) -> Result<Selection> {
        let mut query = match &self.query {
            Some(q) => Query::parse(q)?,
            None => Query::default(),
        };
        query.terms.extend(Query::parse(typed)?.terms);
        let before = self
            .before
            .as_deref()
            .map(|d| {
                day("--before", d)?
                    .pred_opt()
                    .ok_or_else(|| anyhow!("--before {d}: no day is before it"))
            })
            .transpose()?;
        let created_to = match &self.created_to {
            Some(d) => Some(day("--created-to", d)?),
            None => before,
        };
        Ok(Selection {
            query,
            mailbox: self.mailbox.clone(),
            folder: self.folder.clone(),
            created_from: self
                .created_from
                .as_deref()
                .map(|d| day("--created-from", d))
                .transpose()?,
            created_to,
            messages: self.messages.clone(),
        })
    }
}

/// A day written `yyyy/MM/dd` (as the backup's `--start-date`) or `YYYY-MM-DD` (as the search
/// syntax).
fn day(option: &str, s: &str) -> Result<NaiveDate> {
    let t = s.trim();
    NaiveDate::parse_from_str(t, "%Y/%m/%d")
        .or_else(|_| NaiveDate::parse_from_str(t, "%Y-%m-%d"))
        .map_err(|_| {
            anyhow!(
                "{option}: {s:?} is not a day; write yyyy/MM/dd or YYYY-MM-DD (e.g. 2024/01/31)"
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        select: SelectArgs,
    }

    fn selection(args: &[&str]) -> Result<Selection> {
        let cli = Cli::try_parse_from(std::iter::once("x").chain(args.iter().copied()))?;
        cli.select.selection("")
    }

    fn ymd(y: i32, m: u32, d: u32) -> Option<NaiveDate> {
        NaiveDate::from_ymd_opt(y, m, d)
    }

    #[test]
    fn days_are_read_in_both_spellings_and_the_earlier_flags_still_work() {
        let s = selection(&["--created-from", "2024/01/31", "--created-to", "2024-02-29"]).unwrap();
        assert_eq!(
            (s.created_from, s.created_to),
            (ymd(2024, 1, 31), ymd(2024, 2, 29))
        );
        // `--before` meant "before that day": created on or before the day before.
        let s = selection(&["--after", "2024-01-31", "--before", "2024-03-01"]).unwrap();
        assert_eq!(
            (s.created_from, s.created_to),
            (ymd(2024, 1, 31), ymd(2024, 2, 29))
        );
        let s = selection(&["--key", "2024-01/a.eml", "--message", "AAMk1"]).unwrap();
        assert_eq!(s.messages, ["2024-01/a.eml", "AAMk1"]);
        assert!(selection(&["--before", "2024-01-01", "--created-to", "2024-01-01"]).is_err());
    }

    #[test]
    fn a_bad_day_says_how_to_write_it() {
        let e = selection(&["--created-to", "31.01.2024"])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--created-to") && e.contains("yyyy/MM/dd or YYYY-MM-DD"),
            "{e}"
        );
    }

    #[test]
    fn the_earlier_spellings_are_hidden_from_help() {
        use clap::CommandFactory;
        let help = Cli::command().render_long_help().to_string();
        assert!(
            help.contains("--created-from") && help.contains("--message"),
            "{help}"
        );
        for hidden in ["--after", "--before", "--key"] {
            assert!(!help.contains(hidden), "{hidden} in {help}");
        }
    }
}
