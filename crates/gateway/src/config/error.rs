//! What a configuration file gets back when it cannot be served: every problem,
//! each one line of bounded length naming the file.

use std::fmt;
use std::path::{Path, PathBuf};

/// Every problem found in a configuration file.
#[derive(Debug)]
pub struct ConfigError {
    /// The configuration file.
    pub path: PathBuf,
    /// One sentence per problem, `line N, column M: key: ...` or `key: ...`; never empty.
    pub messages: Vec<String>,
}

impl ConfigError {
    pub(super) fn new(path: &Path, messages: Vec<String>) -> ConfigError {
        ConfigError { path: path.to_owned(), messages: messages.iter().map(|m| one_line(m)).collect() }
    }

    /// `path: message`, one per problem.
    pub fn lines(&self) -> impl Iterator<Item = String> + '_ {
        self.messages.iter().map(|message| format!("{}: {message}", self.path.display()))
    }
}

impl fmt::Display for ConfigError {
    /// One line per problem, each starting with the file.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, line) in self.lines().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            f.write_str(&line)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// The longest message a problem gets: values from the file are quoted in
/// messages, and a value can be any length.
const MESSAGE_LIMIT: usize = 400;

/// A message as one line of bounded length: control characters from the file
/// (a key or value with a newline or an escape sequence) are written escaped,
/// and a long message is cut, saying so.
fn one_line(message: &str) -> String {
    let mut line = String::with_capacity(message.len().min(MESSAGE_LIMIT + 16));
    for c in message.chars() {
        if line.len() >= MESSAGE_LIMIT {
            line.push_str("… (cut)");
            break;
        }
        if c.is_control() {
            line.extend(c.escape_default());
        } else {
            line.push(c);
        }
    }
    line
}
