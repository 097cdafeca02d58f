//! The fuzz targets' properties as a plain `cargo test` (stable, no libFuzzer):
//! each runs over its seed corpus (`seeds/TARGET`, the repo's `examples/*.toml`
//! for `config_read`), the findings kept in `regressions/TARGET`, `corpus/TARGET`
//! when a fuzz run has left one, and a few
//! thousand inputs from a deterministic generator. Every failing input is
//! counted and the first few (`GATEHOUSE_FUZZ_SHOW=N`: N) are shown, rather than
//! stopping at the first.

use std::fs;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use arbitrary::{Arbitrary, Unstructured};
use gatehouse_fuzz::{IdentityInput, Rng, SanKind, SummaryInput};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The files of `dirs` (those that exist), sorted.
fn corpus(dirs: &[PathBuf], ext: Option<&str>) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    for dir in dirs {
        let Ok(entries) = fs::read_dir(dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_file() && ext.is_none_or(|e| path.extension().is_some_and(|x| x == e)) {
                files.push((path.clone(), fs::read(&path).unwrap()));
            }
        }
    }
    files.sort();
    files
}

fn dirs(target: &str) -> Vec<PathBuf> {
    ["seeds", "regressions", "corpus"].iter().map(|dir| Path::new(ROOT).join(dir).join(target)).collect()
}

/// Runs `check` on every input, collecting failures instead of stopping at the first.
struct Run {
    name: &'static str,
    runs: usize,
    failures: Vec<String>,
}

impl Run {
    fn new(name: &'static str) -> Run {
        // Failures are reported together at the end, by `finish`: no output per panic.
        panic::set_hook(Box::new(|_| {}));
        Run { name, runs: 0, failures: Vec::new() }
    }

    fn check(&mut self, label: impl FnOnce() -> String, check: impl FnOnce()) {
        self.runs += 1;
        if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(check)) {
            let message = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            let mut message: String = message.chars().take(600).collect();
            message.push_str(&format!("\n    input: {}", label()));
            self.failures.push(message);
        }
    }

    fn finish(self) {
        eprintln!("{}: {} inputs, {} failed", self.name, self.runs, self.failures.len());
        if self.failures.is_empty() {
            return;
        }
        // The panic hook is silent (see `new`): the failures are printed here.
        let shown = std::env::var("GATEHOUSE_FUZZ_SHOW").ok().and_then(|n| n.parse().ok()).unwrap_or(5);
        for failure in self.failures.iter().take(shown) {
            eprintln!("  - {failure}");
        }
        panic!("{}: {} of {} inputs break a property (the first are above)", self.name, self.failures.len(), self.runs);
    }
}

fn short(text: &str) -> String {
    if text.len() > 300 { format!("{:?}... ({} bytes)", &text[..text.floor_char_boundary(300)], text.len()) } else { format!("{text:?}") }
}

#[test]
fn path_canonical() {
    let mut run = Run::new("path_canonical");
    for (file, data) in corpus(&dirs("path_canonical"), None) {
        let text = String::from_utf8_lossy(&data).into_owned();
        run.check(|| format!("{} {}", file.display(), short(&text)), || gatehouse_fuzz::check_path(&text));
    }
    const PIECES: &[&str] = &[
        "/", "//", "/.", "/..", ".", "..", "a", "admin", "Admin", "ADMIN", "%61", "%2e", "%2E", "%2f", "%5c", "\\",
        "%00", "%41", "%7e", "%7E", "%c3%a9", "%e9", "\u{e9}", ";", ";x=1", "%", "%zz", "%3b", "%3B", "%25", "~", " ",
        "\x01", "\x7f", "?", "#", "%20", "%7f", "%2d",
    ];
    let mut rng = Rng::new(0x5eed_0001);
    for i in 0..20_000 {
        let mut path = String::new();
        if i % 16 != 0 {
            path.push('/');
        }
        for _ in 0..rng.below(10) {
            path.push_str(*rng.pick(PIECES));
        }
        run.check(|| format!("{path:?}"), || gatehouse_fuzz::check_path(&path));
    }
    for _ in 0..2_000 {
        let len = rng.below(24);
        let mut bytes = rng.bytes(len);
        bytes.insert(0, b'/');
        let text = String::from_utf8_lossy(&bytes).into_owned();
        run.check(|| format!("{text:?}"), || gatehouse_fuzz::check_path(&text));
    }
    run.finish();
}

/// Pieces spliced into configurations: structure, the keys the schema has, and
/// values that are wrong in the ways an operator's are.
const CONFIG_PIECES: &[&str] = &[
    "\n",
    "\"",
    "=",
    "[",
    "]",
    "[[site]]\n",
    "[[upstream]]\n",
    "[[site.route]]\n",
    "[listen]\nhttps = \"127.0.0.1:8443\"\n",
    "hosts = [\"a.example\", \"b\\nc\"]\n",
    "path_prefix = \"/a/../b\"\n",
    "path_prefix = \"/x\\ny\"\n",
    "upstream = \"no\\nsuch\"\n",
    "upstream = \"\\r\\n\"\n",
    "name = \"\"\n",
    "servers = [\"http://\\n\"]\n",
    "mtls = \"require\"\n",
    "mtls = \"x\\ny\"\n",
    "certificate = { internal_ca = true }\n",
    "certificate = { files = 3 }\n",
    "trust = { ca_files = [] }\n",
    "format = \"a\\nb\"\n",
    "max_connections = 0\n",
    "\u{e9}",
    "'''\nx\n'''",
    "\"\"\"\nx\n\"\"\"",
    "# comment\n",
    "x = 1\n",
    "\t",
];

#[test]
fn config_read() {
    let mut run = Run::new("config_read");
    let mut seeds = corpus(&[Path::new(ROOT).join("../examples")], Some("toml"));
    seeds.extend(corpus(&dirs("config_read"), None));
    assert!(seeds.len() >= 3, "the examples are seeds");
    let texts: Vec<String> = seeds.iter().filter_map(|(_, d)| String::from_utf8(d.clone()).ok()).collect();
    for (file, data) in &seeds {
        if let Ok(text) = std::str::from_utf8(data) {
            run.check(|| format!("{} {}", file.display(), short(text)), || gatehouse_fuzz::check_config(text));
        }
    }
    let mut rng = Rng::new(0x5eed_0002);
    for _ in 0..10_000 {
        let mut chars: Vec<char> = rng.pick(&texts).chars().collect();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(chars.len() + 1);
            match rng.below(4) {
                0 => {
                    let end = (at + rng.below(40)).min(chars.len());
                    chars.drain(at..end);
                }
                1 => {
                    let at2 = rng.below(chars.len() + 1);
                    let (a, b) = (at.min(at2), at.max(at2).min(at.min(at2) + 200));
                    let copy: Vec<char> = chars[a..b].to_vec();
                    let to = rng.below(chars.len() + 1);
                    chars.splice(to..to, copy);
                }
                2 => {
                    let piece = rng.pick(CONFIG_PIECES);
                    chars.splice(at..at, piece.chars());
                }
                _ => {
                    // At the start of a line, where a key or a table header goes.
                    let line_start = chars[..at].iter().rposition(|&c| c == '\n').map_or(0, |i| i + 1);
                    let piece = rng.pick(CONFIG_PIECES);
                    chars.splice(line_start..line_start, piece.chars());
                }
            }
        }
        let text: String = chars.into_iter().collect();
        run.check(|| short(&text), || gatehouse_fuzz::check_config(&text));
    }
    // A long value in a place that is echoed: the message must stay bounded.
    let long = "x".repeat(100_000);
    for (a, b) in [("upstream = \"app\"", format!("upstream = \"{long}\"")), ("access = false", format!("access = \"{long}\""))] {
        for text in &texts {
            if text.contains(a) {
                let text = text.replacen(a, &b, 1);
                run.check(|| short(&text), || gatehouse_fuzz::check_config(&text));
                break;
            }
        }
    }
    run.finish();
}

const SAN_PIECES: &[&str] = &[
    "spiffe://t/a", "a.example", ",", ";", "=", "\"", "\\", " ", "\t", "\u{e9}", "\u{a0}", "URI=", "DNS:", "URI:",
    "By=spiffe://gw", "\r\n", "\x7f", "\x00", "", ",URI=spiffe://prod/admin", "\"\\\"", "%2C",
];

fn san_text(rng: &mut Rng) -> String {
    (0..rng.below(5)).map(|_| *rng.pick(SAN_PIECES)).collect()
}

#[test]
fn identity_headers() {
    let mut run = Run::new("identity_headers");
    for (file, data) in corpus(&dirs("identity_headers"), None) {
        if let Ok(input) = IdentityInput::arbitrary_take_rest(Unstructured::new(&data)) {
            run.check(|| format!("{} {input:?}", file.display()), || gatehouse_fuzz::check_identity(&input));
        }
    }
    let mut rng = Rng::new(0x5eed_0003);
    let kinds = [SanKind::Uri, SanKind::Dns, SanKind::Email, SanKind::Ip, SanKind::Raw];
    for _ in 0..3_000 {
        let chain = (0..rng.below(4)).map(|_| {
            let len = rng.below(64);
            rng.bytes(len)
        });
        let chain: Vec<Vec<u8>> = chain.collect();
        let summary = (rng.below(5) != 0).then(|| SummaryInput {
            serial: "01".to_owned(),
            subject: san_text(&mut rng),
            sans: (0..rng.below(5)).map(|_| (*rng.pick(&kinds), san_text(&mut rng))).collect(),
            not_after: rng.next() as i64,
        });
        let input = IdentityInput { chain, summary, header_name: Vec::new() };
        run.check(|| format!("{input:?}"), || gatehouse_fuzz::check_identity(&input));
    }
    for _ in 0..2_000 {
        let len = rng.below(256);
        let data = rng.bytes(len);
        if let Ok(input) = IdentityInput::arbitrary_take_rest(Unstructured::new(&data)) {
            run.check(|| format!("{input:?}"), || gatehouse_fuzz::check_identity(&input));
        }
    }
    // Header names: the protected ones respelled, and near misses.
    for protected in gateway::identity::SPOOFABLE.iter().map(|n| n.as_str()).chain(["x-request-id", "client-certs"]) {
        for _ in 0..200 {
            let mut name: Vec<u8> = protected.bytes().collect();
            for _ in 0..rng.below(4) {
                let at = rng.below(name.len());
                match rng.below(5) {
                    0 => name[at] = b'_',
                    1 => name[at] = b'-',
                    2 => name[at] = name[at].to_ascii_uppercase(),
                    3 => {
                        name.remove(at);
                    }
                    _ => name.insert(at, *rng.pick(b"_-ax")),
                }
            }
            run.check(|| format!("{:?}", String::from_utf8_lossy(&name)), || gatehouse_fuzz::check_spoofable(&name));
        }
    }
    run.finish();
}

#[test]
fn roster_read() {
    let mut run = Run::new("roster_read");
    let seeds = corpus(&dirs("roster_read"), None);
    assert!(seeds.len() >= 3, "the seeds are there");
    for (file, data) in &seeds {
        run.check(|| format!("{} {}", file.display(), short(&String::from_utf8_lossy(data))), || {
            gatehouse_fuzz::check_roster(data)
        });
    }
    const PIECES: &[&str] = &[
        "cn", "CN", "email", "password", "name", ",", ";", "\t", "\n", "\r\n", "\"", "\"\"", "#", " ", "alice",
        "Alice", "a@example.test", "not-an-email", "\u{e9}", "\x00", "\u{ff}", "x",
    ];
    let mut rng = Rng::new(0x5eed_0004);
    for _ in 0..20_000 {
        let mut text = String::new();
        if rng.below(4) != 0 {
            text.push_str(*rng.pick(&["cn\n", "cn,email\n", "cn;email;password\n", "email\tcn\n", "name\n"]));
        }
        for _ in 0..rng.below(16) {
            text.push_str(*rng.pick(PIECES));
        }
        run.check(|| format!("{text:?}"), || gatehouse_fuzz::check_roster(text.as_bytes()));
    }
    for _ in 0..2_000 {
        let len = rng.below(64);
        let mut bytes = b"cn,email\n".to_vec();
        bytes.extend(rng.bytes(len));
        run.check(|| format!("{bytes:?}"), || gatehouse_fuzz::check_roster(&bytes));
    }
    run.finish();
}

#[test]
fn csr_check() {
    let mut run = Run::new("csr_check");
    let seeds = corpus(&dirs("csr_check"), None);
    assert!(seeds.len() >= 4, "the seeds are there");
    for (file, data) in &seeds {
        run.check(|| format!("{}", file.display()), || gatehouse_fuzz::check_csr(data));
    }
    // Each seed cut short, bytes flipped, bytes dropped: DER and PEM damaged the ways files are.
    let mut rng = Rng::new(0x5eed_0005);
    for _ in 0..3_000 {
        let (_, seed) = rng.pick(&seeds);
        let mut bytes = seed.clone();
        match rng.below(3) {
            0 => bytes.truncate(rng.below(bytes.len() + 1)),
            1 => {
                for _ in 0..1 + rng.below(4) {
                    let at = rng.below(bytes.len());
                    bytes[at] ^= 1 << rng.below(8);
                }
            }
            _ => {
                let at = rng.below(bytes.len());
                let end = (at + rng.below(16)).min(bytes.len());
                bytes.drain(at..end);
            }
        }
        run.check(|| format!("{bytes:?}"), || gatehouse_fuzz::check_csr(&bytes));
    }
    run.finish();
}

/// Pieces spliced into JWS bodies and their decoded headers: the members and values
/// ACME parsers get wrong.
const JWS_PIECES: &[&str] = &[
    "{", "}", "[", "]", ",", ":", "\"", "\\", "=", "+", "/", "-", "_", "null", "true", "false", "0", "1e999",
    "\"protected\":", "\"payload\":", "\"signature\":", "\"header\":{}", "\"signatures\":[]", "\"alg\":\"none\"",
    "\"alg\":\"HS256\"", "\"alg\":\"ES384\"", "\"jwk\":{}", "\"kid\":\"\"", "\"crit\":[\"b64\"]", "\"b64\":false",
    "\"kty\":\"RSA\"", "\"crv\":\"P-521\"", "\"d\":\"AA\"", "\u{e9}", "\x00", "\n", "\u{feff}",
];

#[test]
fn acme_jws() {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    let mut run = Run::new("acme_jws");
    let seeds = corpus(&dirs("acme_jws"), None);
    assert!(seeds.len() >= 6, "the seeds are there");
    for (file, data) in &seeds {
        run.check(|| format!("{} {}", file.display(), short(&String::from_utf8_lossy(data))), || {
            gatehouse_fuzz::check_jws(data)
        });
    }
    let mut rng = Rng::new(0x5eed_0006);
    let texts: Vec<String> = seeds.iter().filter_map(|(_, d)| String::from_utf8(d.clone()).ok()).collect();
    // The bodies damaged: cut, bytes flipped, pieces spliced in.
    for _ in 0..3_000 {
        let mut bytes = rng.pick(&texts).clone().into_bytes();
        match rng.below(3) {
            0 => bytes.truncate(rng.below(bytes.len() + 1)),
            1 => {
                for _ in 0..1 + rng.below(4) {
                    let at = rng.below(bytes.len());
                    bytes[at] ^= 1 << rng.below(8);
                }
            }
            _ => {
                let at = rng.below(bytes.len() + 1);
                bytes.splice(at..at, rng.pick(JWS_PIECES).bytes());
            }
        }
        run.check(|| short(&String::from_utf8_lossy(&bytes)), || gatehouse_fuzz::check_jws(&bytes));
    }
    // The protected headers damaged, decoded and encoded again, so that the damage
    // gets past base64url: the header checks and the key checks.
    for _ in 0..3_000 {
        let text = rng.pick(&texts);
        let Ok(serde_json::Value::Object(mut body)) = serde_json::from_str::<serde_json::Value>(text) else { continue };
        let Some(protected) = body.get("protected").and_then(|p| p.as_str()) else { continue };
        let Ok(header) = URL_SAFE_NO_PAD.decode(protected) else { continue };
        let mut header = String::from_utf8_lossy(&header).into_owned();
        for _ in 0..1 + rng.below(3) {
            let at = header.floor_char_boundary(rng.below(header.len() + 1));
            if rng.below(2) == 0 {
                let piece = *rng.pick(JWS_PIECES);
                header.insert_str(at, piece);
            } else {
                let end = header.floor_char_boundary((at + rng.below(12)).min(header.len()));
                header.replace_range(at..end, "");
            }
        }
        body.insert("protected".into(), URL_SAFE_NO_PAD.encode(&header).into());
        let bytes = serde_json::Value::Object(body).to_string().into_bytes();
        run.check(|| short(&header), || gatehouse_fuzz::check_jws(&bytes));
    }
    // Random bytes, and a body of the size limit and one byte over it.
    for _ in 0..500 {
        let len = rng.below(128);
        let bytes = rng.bytes(len);
        run.check(|| format!("{bytes:?}"), || gatehouse_fuzz::check_jws(&bytes));
    }
    for len in [acme::jws::MAX_BODY_BYTES, acme::jws::MAX_BODY_BYTES + 1] {
        let bytes = vec![b'{'; len];
        run.check(|| format!("{len} bytes of '{{'"), || gatehouse_fuzz::check_jws(&bytes));
    }
    run.finish();
}

/// Pieces spliced into keyless frames: item headers of known and unknown tags,
/// lengths at the edges, a second header.
const KEYLESS_PIECES: &[&[u8]] = &[
    &[0x11, 0x00, 0x01, 0xF1],
    &[0x11, 0x00, 0x00],
    &[0x11, 0x00, 0x02, 0x01, 0x02],
    &[0x12, 0xFF, 0xFF],
    &[0x12, 0x00, 0x01],
    &[0x04, 0x00, 0x14],
    &[0x01, 0x00, 0x20],
    &[0x03, 0x00, 0x10],
    &[0x17, 0x00, 0x01, 0x01],
    &[0x20, 0x00, 0x00],
    &[0x7F, 0x00, 0x00],
    &[0x01, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x01],
    &[0xFF],
];

#[test]
fn keyless_decode() {
    let mut run = Run::new("keyless_decode");
    let seeds = corpus(&dirs("keyless_decode"), None);
    assert!(seeds.len() >= 6, "the seeds are there");
    for (file, data) in &seeds {
        run.check(|| format!("{}", file.display()), || gatehouse_fuzz::check_keyless(data));
    }
    // Each seed cut short, bytes flipped, pieces spliced in (the body length fixed
    // up half the time, so that the damage reaches the items).
    let mut rng = Rng::new(0x5eed_0007);
    for _ in 0..6_000 {
        let (_, seed) = rng.pick(&seeds);
        let mut bytes = seed.clone();
        match rng.below(3) {
            0 => bytes.truncate(rng.below(bytes.len() + 1)),
            1 => {
                for _ in 0..1 + rng.below(4) {
                    let at = rng.below(bytes.len());
                    bytes[at] ^= 1 << rng.below(8);
                }
            }
            _ => {
                let at = 8.min(bytes.len()) + rng.below(bytes.len().saturating_sub(8) + 1);
                bytes.splice(at..at, rng.pick(KEYLESS_PIECES).iter().copied());
            }
        }
        if bytes.len() >= 8 && rng.below(2) == 0 {
            let body = u16::try_from(bytes.len() - 8).unwrap_or(u16::MAX);
            bytes[2..4].copy_from_slice(&body.to_be_bytes());
        }
        run.check(|| format!("{bytes:02X?}"), || gatehouse_fuzz::check_keyless(&bytes));
    }
    // Random bodies behind a good header, and random bytes.
    for _ in 0..2_000 {
        let len = rng.below(64);
        let mut bytes = vec![0x01, 0x00, 0x00, len as u8, 0x00, 0x00, 0x00, 0x2A];
        bytes.extend(rng.bytes(len));
        run.check(|| format!("{bytes:02X?}"), || gatehouse_fuzz::check_keyless(&bytes));
    }
    for _ in 0..500 {
        let len = rng.below(32);
        let bytes = rng.bytes(len);
        run.check(|| format!("{bytes:02X?}"), || gatehouse_fuzz::check_keyless(&bytes));
    }
    run.finish();
}
