//! A throwaway PostgreSQL cluster for one test binary, and a new database in it
//! per test: what the store's tests and the `gatehouse` CLI tests run against
//! (dev-only; never a dependency of the program).
//!
//! Debian's postgresql (scripts/test.sh installs it): `initdb` makes a cluster in a
//! temp dir, and `postgres` serves it on 127.0.0.1 on a free port, started once, by
//! the first test that asks. When the tests run as root, both run as the user
//! `postgres` (initdb refuses root), in a dir given to that user. The server asks
//! for a password over TCP, as a real one would; [`database`]'s URLs carry it.
//!
//! The server is stopped, and its dir removed, by a small shell that owns the dir
//! from before initdb, starts the server, and waits on a pipe whose only writer is
//! this process: when the test binary exits, however it exits (even killed), the
//! kernel closes the pipe and the shell stops the server. No server outlives its tests.
//!
//! A test that stops the database under running peers takes a [`Private`] cluster of
//! its own instead, which it stops and starts again on the same port and data.

#![forbid(unsafe_code)]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use sqlx::Connection;

mod private;
pub use private::Private;

/// The superuser the cluster is made with.
const SUPERUSER: &str = "gatehouse";

/// The superuser's password: the server asks for it (scram-sha-256), as a real one
/// would, so tests see what a wrong password does. New in every test binary.
fn password() -> &'static str {
    static PASSWORD: OnceLock<String> = OnceLock::new();
    PASSWORD.get_or_init(|| {
        use std::hash::BuildHasher;
        let random = std::collections::hash_map::RandomState::new();
        format!("pw{:016x}{:016x}", random.hash_one(1u8), random.hash_one(2u8))
    })
}

/// `url` (one of this cluster's) with `password` in place of the right one.
pub fn with_password(url: &str, password: &str) -> String {
    url.replacen(&format!(":{}@", self::password()), &format!(":{password}@"), 1)
}

/// Owns the cluster's dir from before initdb: once told `serve` on its stdin, starts
/// the server given as its arguments (after the dir); at end of file on its stdin,
/// stops the server, then removes the dir. A Ctrl-C reaching the whole process
/// group is left to the pipe, so the dir is still removed.
const SUPERVISOR: &str = r#"
dir=$1; shift
trap '' INT HUP
exec 3<&0 </dev/null
status=1
if read -r go <&3 && [ "$go" = serve ]; then
  "$@" >"$dir/server.log" 2>&1 &
  server=$!
  { read -r _ <&3; kill -INT "$server" 2>/dev/null; } &
  lifeline=$!
  wait "$server"
  status=$?
  kill "$lifeline" 2>/dev/null
  [ "$status" -eq 0 ] || cat "$dir/server.log" >&2
fi
rm -rf "$dir"
exit "$status"
"#;

/// The running cluster.
struct Cluster {
    port: u16,
    /// The write end of the supervisor's pipe: held until this process exits.
    _lifeline: ChildStdin,
    _supervisor: Child,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();

/// [`database`], for a test that is not async: on a runtime of its own.
pub fn database_blocking() -> String {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("start a tokio runtime");
    runtime.block_on(database())
}

/// The URL of a new, empty database in this binary's cluster.
pub async fn database() -> String {
    let port = CLUSTER.get_or_init(|| Cluster::start().unwrap_or_else(|e| panic!("{e}"))).port;
    create_database(port).await
}

/// Creates a new, empty database in the cluster on `port`; its URL.
async fn create_database(port: u16) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    let name = format!("test_{}", NEXT.fetch_add(1, Ordering::Relaxed));
    let mut admin = sqlx::PgConnection::connect(&url(port, "postgres")).await.expect("connect to the test cluster");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .expect("create a test database");
    admin.close().await.expect("close the admin connection");
    url(port, &name)
}

fn url(port: u16, database: &str) -> String {
    format!("postgres://{SUPERUSER}:{}@127.0.0.1:{port}/{database}", password())
}

impl Cluster {
    fn start() -> Result<Cluster, String> {
        let bin = server_binaries()?;
        let run_as = server_user()?;
        // A free port can be taken between our look and the server's bind: try a few
        // times, each with a new cluster (a failed start removes its dir).
        let mut failures = Vec::new();
        for _ in 0..3 {
            match Cluster::attempt(&bin, run_as) {
                Ok(cluster) => return Ok(cluster),
                Err(e) => failures.push(e),
            }
        }
        Err(format!("the PostgreSQL test cluster did not start:\n{}", failures.join("\n")))
    }

    /// Makes a cluster in a new temp dir, serves it on a free port and waits until it
    /// accepts connections.
    fn attempt(bin: &Path, run_as: Option<(u32, u32)>) -> Result<Cluster, String> {
        let dir = tempfile::Builder::new()
            .prefix("gatehouse-store-pg-")
            .tempdir()
            .map_err(|e| format!("make a temp dir for the PostgreSQL test cluster: {e}"))?
            .keep();
        let data = dir.join("data");
        let port = free_port()?;
        let server = as_server_user(run_as, &bin.join("postgres"));
        let mut supervisor = Command::new("sh")
            .args(["-c", SUPERVISOR, "sh"])
            .arg(&dir)
            .arg(server.get_program())
            .args(server.get_args())
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="])
            // A test cluster: no fsync, room for every test's pools at once.
            .args(["-c", "fsync=off", "-c", "max_connections=300"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("start sh for the PostgreSQL test cluster: {e}"))?;
        // From here the supervisor removes the dir when this process is gone, even mid-initdb.
        let mut lifeline = supervisor.stdin.take().ok_or("the supervisor has no stdin")?;
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
                .map_err(|e| format!("give {} to the user postgres: {e}", dir.display()))?;
        }
        initdb(bin, run_as, &dir)?;
        lifeline.write_all(b"serve\n").map_err(|e| format!("tell the supervisor to serve: {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = supervisor.try_wait().map_err(|e| e.to_string())? {
                let mut log = String::new();
                if let Some(mut stderr) = supervisor.stderr.take() {
                    let _ = stderr.read_to_string(&mut log);
                }
                return Err(format!("postgres on port {port} exited ({status}):\n{log}"));
            }
            if accepting(bin, port)? {
                return Ok(Cluster { port, _lifeline: lifeline, _supervisor: supervisor });
            }
            if Instant::now() > deadline {
                return Err(format!("postgres on port {port} did not accept connections within 60 s"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Makes the cluster `dir/data` (superuser [`SUPERUSER`] with [`password`]); `dir`
/// belongs to the server's user already.
fn initdb(bin: &Path, run_as: Option<(u32, u32)>, dir: &Path) -> Result<(), String> {
    let password_file = dir.join("password");
    std::fs::write(&password_file, password()).map_err(|e| format!("write the superuser's password: {e}"))?;
    let initdb = as_server_user(run_as, &bin.join("initdb"))
        .args(["--auth=scram-sha-256", "--encoding=UTF8", "--no-locale", "--no-sync", "--username", SUPERUSER])
        .arg(format!("--pwfile={}", password_file.display()))
        .arg("-D")
        .arg(dir.join("data"))
        .output()
        .map_err(|e| format!("run {}/initdb: {e}", bin.display()))?;
    if !initdb.status.success() {
        return Err(format!("initdb failed: {}", String::from_utf8_lossy(&initdb.stderr)));
    }
    Ok(())
}

/// Whether the server on `port` accepts connections now (`pg_isready`).
fn accepting(bin: &Path, port: u16) -> Result<bool, String> {
    let status = Command::new(bin.join("pg_isready"))
        .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string(), "-U", SUPERUSER, "-d", "postgres"])
        .status()
        .map_err(|e| format!("run pg_isready: {e}"))?;
    Ok(status.success())
}

/// `program` as the user that owns the cluster: this one, or `postgres` when this is root.
fn as_server_user(run_as: Option<(u32, u32)>, program: &Path) -> Command {
    match run_as {
        None => Command::new(program),
        Some((uid, gid)) => {
            let mut command = Command::new("setpriv");
            command.arg(format!("--reuid={uid}")).arg(format!("--regid={gid}")).arg("--init-groups").arg("--");
            command.arg(program);
            command
        }
    }
}

/// The newest installed PostgreSQL's programs (Debian keeps them off PATH).
fn server_binaries() -> Result<PathBuf, String> {
    let versions = std::fs::read_dir("/usr/lib/postgresql").map_err(|_| NOT_INSTALLED.to_owned())?;
    versions
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| Some((entry.file_name().to_str()?.parse::<u32>().ok()?, entry.path().join("bin"))))
        .filter(|(_, bin)| bin.join("initdb").exists() && bin.join("postgres").exists())
        .max_by_key(|(version, _)| *version)
        .map(|(_, bin)| bin)
        .ok_or_else(|| NOT_INSTALLED.to_owned())
}

const NOT_INSTALLED: &str = "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb), and the store's \
    tests run against a real one: install Debian's postgresql (apt-get install postgresql), as scripts/test.sh does";

/// `None` when this process is not root; as root, the uid and gid of `postgres`, who runs the cluster.
fn server_user() -> Result<Option<(u32, u32)>, String> {
    let me = std::fs::metadata("/proc/self").map_err(|e| format!("read /proc/self: {e}"))?.uid();
    if me != 0 {
        return Ok(None);
    }
    let id = |flag: &str| -> Result<u32, String> {
        let out = Command::new("id").args([flag, "postgres"]).output().map_err(|e| format!("run id: {e}"))?;
        String::from_utf8_lossy(&out.stdout).trim().parse().map_err(|_| {
            "the tests run as root, so the PostgreSQL test cluster runs as the user postgres, which does not \
             exist: install Debian's postgresql (it makes that user), as scripts/test.sh does"
                .to_owned()
        })
    };
    Ok(Some((id("-u")?, id("-g")?)))
}

fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| format!("find a free port: {e}"))?;
    Ok(listener.local_addr().map_err(|e| e.to_string())?.port())
}
