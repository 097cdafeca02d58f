//! `exec = "PATH"`: a program that writes the record, run as lego's exec provider runs
//! it: `PATH present _acme-challenge.NAME. VALUE`, then `PATH cleanup ... VALUE`; no
//! shell, so the value and the name reach it as they are.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use hickory_proto::rr::Name;
use tokio::process::Command;

use super::DnsError;

/// How long a cleanup may run (a present has the order's timeout).
pub(super) const CLEANUP_LIMIT: Duration = Duration::from_secs(120);
/// How many of the last stderr lines an error shows.
const STDERR_LINES: usize = 5;

/// The hook program.
#[derive(Debug)]
pub(super) struct Hook {
    program: PathBuf,
}

impl Hook {
    pub(super) fn new(program: PathBuf) -> Hook {
        Hook { program }
    }

    /// Runs `PROGRAM action RECORD VALUE`, killing it after `limit`; `Ok` when it exits 0.
    pub(super) async fn run(
        &self,
        action: &'static str,
        record: &Name,
        value: &str,
        limit: Duration,
    ) -> Result<(), DnsError> {
        let fqdn = record.to_ascii();
        let mut command = Command::new(&self.program);
        command
            .args([action, fqdn.as_str(), value])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let child = command.spawn().map_err(|source| DnsError::HookStart { program: self.program.clone(), source })?;
        let output = match tokio::time::timeout(limit, child.wait_with_output()).await {
            Ok(Ok(output)) => output,
            Ok(Err(source)) => return Err(DnsError::HookStart { program: self.program.clone(), source }),
            Err(_) => {
                return Err(DnsError::HookTimeout { program: self.program.clone(), action, record: fqdn, limit });
            }
        };
        if !output.status.success() {
            return Err(DnsError::HookFailed {
                program: self.program.clone(),
                action,
                record: fqdn,
                status: output.status.to_string(),
                stderr: last_lines(&output.stderr),
            });
        }
        tracing::info!(program = %self.program.display(), record = %fqdn, "dns-01 hook: {action}");
        Ok(())
    }
}

/// The last [`STDERR_LINES`] non-blank lines of `stderr`, on one line.
fn last_lines(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    if lines.is_empty() {
        return "it wrote nothing to stderr".to_owned();
    }
    lines[lines.len().saturating_sub(STDERR_LINES)..].join(" / ")
}
