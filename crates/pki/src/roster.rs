//! The CSV that `gatehouse ca batch` issues from: one client per row.
//!
//! The first line is a header naming the columns: `cn` (required), `email`
//! and `password` (optional), in any order, separated by commas, semicolons
//! (Excel's default in many locales) or tabs; the header decides which. A
//! file is read whole and refused whole: if any line is wrong (an unknown
//! column, a missing or duplicate name, a bad email, a row with more fields
//! than the header), every problem is listed and nothing is issued, so a
//! header taken for a user or a line taken for one name never becomes a
//! certificate.

use std::collections::HashMap;

use crate::name::SubjectAltName;

/// The columns a roster may have.
pub const COLUMNS: [&str; 3] = ["cn", "email", "password"];

/// The delimiters a header may use.
const DELIMITERS: [(u8, &str); 3] = [(b',', "commas"), (b';', "semicolons"), (b'\t', "tabs")];

/// Longest piece of input quoted back in a message.
const QUOTE: usize = 60;

/// One client to issue for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RosterRow {
    /// Line in the file (1-based).
    pub line: u64,
    /// Common name.
    pub cn: String,
    /// `email:` SAN, if the row has one.
    pub email: Option<SubjectAltName>,
    /// The row's own PKCS#12 password, if it has one.
    pub password: Option<String>,
}

/// Something wrong in a roster, at a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RosterProblem {
    /// Line in the file (1-based).
    pub line: u64,
    /// What is wrong and what to write instead.
    pub message: String,
}

impl std::fmt::Display for RosterProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// Reads a roster: every row, or every problem found. `check_cn` adds the
/// caller's own rule for names (that it can name files, say).
pub fn read_roster(
    bytes: &[u8],
    check_cn: impl Fn(&str) -> Result<(), String>,
) -> Result<Vec<RosterRow>, Vec<RosterProblem>> {
    let problem = |line, message: String| vec![RosterProblem { line, message }];
    let Some((header_line, header)) = first_line(bytes) else {
        return Err(problem(1, "the file is empty; write a header line such as `cn,email,password`".into()));
    };
    let (delimiter, columns) = header_columns(header).map_err(|message| problem(header_line, message))?;
    // Lines end at `\n` alone (CRLF made LF first): the csv crate's line numbers do not
    // count a record that ends in CRLF or a lone CR, and Excel writes CRLF.
    let text = crlf_to_lf(bytes);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .comment(Some(b'#'))
        .delimiter(delimiter)
        .terminator(csv::Terminator::Any(b'\n'))
        .from_reader(text.as_slice());
    let mut rows = Vec::new();
    let mut problems = Vec::new();
    let mut first_line_of: HashMap<String, u64> = HashMap::new();
    let mut header_seen = false;
    for (index, record) in reader.records().enumerate() {
        let record = match record {
            Ok(record) => record,
            Err(e) => {
                let line = e.position().map_or(index as u64 + 1, |p| p.line());
                problems.push(RosterProblem { line, message: unreadable(&e) });
                continue;
            }
        };
        let line = record.position().map_or(index as u64 + 1, |p| p.line());
        if record.iter().all(str::is_empty) {
            continue; // a blank line
        }
        if !header_seen {
            header_seen = true;
            continue;
        }
        if record.len() > columns.len() {
            problems.push(RosterProblem {
                line,
                message: format!(
                    "{} fields, but the header names {} column{}; quote a value that holds the delimiter",
                    record.len(),
                    columns.len(),
                    if columns.len() == 1 { "" } else { "s" }
                ),
            });
            continue;
        }
        let field =
            |name: &str| columns.iter().position(|c| *c == name).and_then(|i| record.get(i)).filter(|v| !v.is_empty());
        let Some(cn) = field("cn") else {
            problems.push(RosterProblem { line, message: "the cn is empty; every row names its client".into() });
            continue;
        };
        if let Err(message) = check_cn(cn) {
            problems.push(RosterProblem { line, message });
            continue;
        }
        let email = match field("email").map(|e| SubjectAltName::parse(&format!("email:{e}"))).transpose() {
            Ok(email) => email,
            Err(e) => {
                problems.push(RosterProblem { line, message: e.to_string() });
                continue;
            }
        };
        // Names that differ only in case would share files on a case-insensitive file system.
        match first_line_of.get(&cn.to_lowercase()) {
            Some(first) => problems.push(RosterProblem {
                line,
                message: format!("the cn '{}' repeats line {first}; each name may appear once", quote(cn)),
            }),
            None => {
                first_line_of.insert(cn.to_lowercase(), line);
                rows.push(RosterRow { line, cn: cn.to_owned(), email, password: field("password").map(str::to_owned) });
            }
        }
    }
    if problems.is_empty() { Ok(rows) } else { Err(problems) }
}

/// `bytes` with every CRLF made LF.
fn crlf_to_lf(bytes: &[u8]) -> Vec<u8> {
    let mut text = Vec::with_capacity(bytes.len());
    for (i, &b) in bytes.iter().enumerate() {
        if !(b == b'\r' && bytes.get(i + 1) == Some(&b'\n')) {
            text.push(b);
        }
    }
    text
}

/// The first line that is neither blank nor a `#` comment, with its number.
fn first_line(bytes: &[u8]) -> Option<(u64, &[u8])> {
    bytes
        .split(|&b| b == b'\n')
        .enumerate()
        .map(|(i, line)| (i as u64 + 1, line.strip_suffix(b"\r").unwrap_or(line)))
        .find(|(_, line)| {
            let trimmed = line.trim_ascii();
            !trimmed.is_empty() && !trimmed.starts_with(b"#")
        })
}

/// The header's delimiter and its columns, in order.
fn header_columns(header: &[u8]) -> Result<(u8, Vec<&'static str>), String> {
    for (delimiter, _) in DELIMITERS {
        let names: Vec<String> = header
            .split(|&b| b == delimiter)
            .map(|name| String::from_utf8_lossy(name.trim_ascii()).trim_matches('"').to_ascii_lowercase())
            .collect();
        let known: Vec<&'static str> =
            names.iter().filter_map(|name| COLUMNS.iter().find(|c| **c == name.as_str()).copied()).collect();
        if known.len() != names.len() {
            continue;
        }
        if !known.contains(&"cn") {
            return Err(format!(
                "the header '{}' has no cn column; allowed columns: {}",
                quote(&String::from_utf8_lossy(header)),
                COLUMNS.join(", ")
            ));
        }
        if let Some(twice) = known.iter().enumerate().find(|(i, c)| known[..*i].contains(c)) {
            return Err(format!("the header names the column {} twice", twice.1));
        }
        return Ok((delimiter, known));
    }
    let separators: Vec<&str> = DELIMITERS.iter().map(|(_, name)| *name).collect();
    Err(format!(
        "the first line must be a header naming the columns, from {} (cn required), separated by {}; found '{}'",
        COLUMNS.join(", "),
        separators.join(", ").replacen(", tabs", " or tabs", 1),
        quote(&String::from_utf8_lossy(header))
    ))
}

fn unreadable(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::Utf8 { .. } => "not UTF-8 text; save the file as UTF-8 CSV".into(),
        _ => "unreadable CSV (an unclosed quote?); see RFC 4180 for quoting".into(),
    }
}

/// Input quoted back in a message: at most [`QUOTE`] characters, control characters escaped.
fn quote(text: &str) -> String {
    let mut quoted: String = text.chars().take(QUOTE).flat_map(char::escape_debug).collect();
    if text.chars().count() > QUOTE {
        quoted.push_str("...");
    }
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cns(text: &str) -> Vec<String> {
        read_roster(text.as_bytes(), |_| Ok(())).unwrap().into_iter().map(|r| r.cn).collect()
    }

    fn problems(text: &str) -> Vec<String> {
        read_roster(text.as_bytes(), |_| Ok(())).unwrap_err().into_iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn the_header_picks_columns_and_delimiter() {
        assert_eq!(cns("cn\nalice\nbob\n"), ["alice", "bob"]);
        assert_eq!(cns("email;CN\nalice@example.test;alice\n"), ["alice"]);
        assert_eq!(cns("# users\n\ncn\tpassword\r\nalice\tsecret\r\n"), ["alice"]);
        let rows = read_roster(b"password,cn,email\npw,alice,alice@example.test\n,bob,\n", |_| Ok(())).unwrap();
        assert_eq!(rows[0].password.as_deref(), Some("pw"));
        assert_eq!(rows[0].email, Some(SubjectAltName::parse("email:alice@example.test").unwrap()));
        assert_eq!((rows[1].password.as_ref(), rows[1].email.as_ref(), rows[1].line), (None, None, 3));
    }

    #[test]
    fn a_file_without_a_known_header_is_refused_whole() {
        for text in ["name\nalice\n", "name,mail\nalice,a@example.test\n", "alice\nbob\n"] {
            let got = problems(text);
            assert_eq!(got.len(), 1, "{text:?}: {got:?}");
            assert!(got[0].starts_with("line 1: the first line must be a header"), "{got:?}");
            assert!(got[0].contains("cn, email, password"), "{got:?}");
        }
        assert!(problems("email,password\n")[0].contains("has no cn column"));
        assert!(problems("cn,cn\nx,y\n")[0].contains("cn twice"));
        assert!(problems("")[0].contains("empty"));
    }

    #[test]
    fn rows_wider_than_the_header_are_refused() {
        let got = problems("cn,email\nalice,a@example.test,extra\n");
        assert!(got[0].contains("3 fields, but the header names 2 columns"), "{got:?}");
        // Semicolons under a semicolon header are columns, not part of the name.
        let rows = read_roster(b"cn;email\nalice;alice@example.test\n", |_| Ok(())).unwrap();
        assert_eq!((rows[0].cn.as_str(), rows[0].email.is_some()), ("alice", true));
    }

    #[test]
    fn duplicates_bad_emails_and_empty_names_are_all_listed() {
        let got = problems("cn,email\nalice,\nbob,not-an-email\nALICE,\n,x@example.test\n");
        assert_eq!(got.len(), 3, "{got:?}");
        assert!(got[0].starts_with("line 3:"), "{got:?}");
        assert!(got[1].starts_with("line 4: the cn 'ALICE' repeats line 2"), "{got:?}");
        assert!(got[2].starts_with("line 5: the cn is empty"), "{got:?}");
    }

    #[test]
    fn lines_are_counted_in_crlf_files() {
        let got = problems("cn\r\nalice\r\n\r\nbob\r\nalice\r\n");
        assert_eq!(got, ["line 5: the cn 'alice' repeats line 2; each name may appear once"]);
    }

    #[test]
    fn quotes_are_bounded() {
        let long = format!("{}\nalice\n", "x".repeat(5000));
        let got = problems(&long);
        assert!(got[0].len() < 400, "{}", got[0].len());
    }
}
