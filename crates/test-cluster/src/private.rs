//! A PostgreSQL cluster of one test's own ([`Private`]), which the test stops and
//! starts again on the same port and data: what a fault test needs to take the
//! database away from running gateways and give it back.
//!
//! As with the shared cluster, a small shell owns the cluster's dir from before
//! initdb and reads its orders on a pipe whose only writer is this process: `start`
//! and `stop` run `pg_ctl` (so one start or stop is over before the next order, or
//! the end, is read), and at end of file, however this process ended (even killed),
//! the shell stops the server at once and removes the dir.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use super::{accepting, as_server_user, create_database, free_port, initdb, server_binaries, server_user, url};

/// Owns the cluster's dir from before initdb; its arguments after the dir run
/// `pg_ctl` as the server's user. Each line on its stdin (`start` or `stop`) runs
/// that `pg_ctl` command, waiting until it is done, and answers pg_ctl's exit status
/// on its stdout. At end of file on its stdin: an immediate stop, then the dir is
/// removed. A Ctrl-C reaching the whole process group is left to the pipe.
const SUPERVISOR: &str = r#"
dir=$1; shift
trap '' INT HUP
exec 3<&0 </dev/null
while read -r order <&3; do
  case $order in
    start) "$@" start -D "$dir/data" -l "$dir/server.log" -w -t 60 ;;
    stop) "$@" stop -D "$dir/data" -m fast -w -t 60 ;;
    *) false ;;
  esac >/dev/null 2>&1
  echo "$?"
done
"$@" stop -D "$dir/data" -m immediate -w -t 60 >/dev/null 2>&1
rm -rf "$dir"
"#;

/// A PostgreSQL cluster for one test, on 127.0.0.1 on a port of its own, that the
/// test may [`stop`](Private::stop) and [`start`](Private::start) again; the server
/// is stopped and its dir removed when this is dropped, or when the test binary dies.
pub struct Private {
    port: u16,
    dir: PathBuf,
    /// The write end of the supervisor's pipe: its orders; closed on drop.
    orders: Option<ChildStdin>,
    answers: BufReader<ChildStdout>,
    supervisor: Child,
}

impl Private {
    /// Makes a cluster in a new temp dir and serves it on a free port; returns once it
    /// accepts connections. Panics with what went wrong when it cannot.
    pub fn start() -> Private {
        Private::try_start().unwrap_or_else(|e| panic!("{e}"))
    }

    fn try_start() -> Result<Private, String> {
        let bin = server_binaries()?;
        let run_as = server_user()?;
        // A free port can be taken between our look and the server's bind: try a few
        // times, each with a new cluster (a dropped one removes its dir).
        let mut failures = Vec::new();
        for _ in 0..3 {
            match Private::attempt(&bin, run_as) {
                Ok(cluster) => return Ok(cluster),
                Err(e) => failures.push(e),
            }
        }
        Err(format!("a private PostgreSQL test cluster did not start:\n{}", failures.join("\n")))
    }

    fn attempt(bin: &Path, run_as: Option<(u32, u32)>) -> Result<Private, String> {
        let dir = tempfile::Builder::new()
            .prefix("gatehouse-private-pg-")
            .tempdir()
            .map_err(|e| format!("make a temp dir for a private PostgreSQL test cluster: {e}"))?
            .keep();
        let port = free_port()?;
        let pg_ctl = as_server_user(run_as, &bin.join("pg_ctl"));
        let mut supervisor = Command::new("sh")
            .args(["-c", SUPERVISOR, "sh"])
            .arg(&dir)
            .arg(pg_ctl.get_program())
            .args(pg_ctl.get_args())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("start sh for a private PostgreSQL test cluster: {e}"))?;
        // From here the supervisor removes the dir when this process is gone, even mid-initdb.
        let orders = supervisor.stdin.take().ok_or("the supervisor has no stdin")?;
        let answers = BufReader::new(supervisor.stdout.take().ok_or("the supervisor has no stdout")?);
        let mut cluster = Private { port, dir: dir.clone(), orders: Some(orders), answers, supervisor };
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
                .map_err(|e| format!("give {} to the user postgres: {e}", dir.display()))?;
        }
        initdb(bin, run_as, &dir)?;
        // The settings live in the cluster, so a restart serves the same port the same way.
        let settings = format!(
            "\nport = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\n\
             fsync = off\nmax_connections = 300\n"
        );
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.join("data/postgresql.conf"))
            .and_then(|mut conf| conf.write_all(settings.as_bytes()))
            .map_err(|e| format!("write the private cluster's settings: {e}"))?;
        cluster.order("start")?;
        Ok(cluster)
    }

    /// The port the server listens on, the same across restarts.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of `database` in this cluster.
    pub fn url(&self, database: &str) -> String {
        url(self.port, database)
    }

    /// The URL of a new, empty database in this cluster.
    pub async fn database(&self) -> String {
        create_database(self.port).await
    }

    /// [`Private::database`], for a test that is not async: on a runtime of its own.
    pub fn database_blocking(&self) -> String {
        let runtime =
            tokio::runtime::Builder::new_current_thread().enable_all().build().expect("start a tokio runtime");
        runtime.block_on(self.database())
    }

    /// Stops the server with a fast shutdown (open sessions are cut, what was
    /// committed stays) and returns once it has exited: nothing listens on the port.
    pub fn stop(&mut self) {
        self.order("stop").unwrap_or_else(|e| panic!("{e}"));
    }

    /// Starts the server again on the same port and data; returns once it accepts connections.
    pub fn start_again(&mut self) {
        self.order("start").unwrap_or_else(|e| panic!("{e}"));
    }

    /// Has the supervisor run `pg_ctl ORDER`; after a start, also waits until the
    /// port accepts connections.
    fn order(&mut self, order: &str) -> Result<(), String> {
        let orders = self.orders.as_mut().ok_or("the private cluster is closed")?;
        writeln!(orders, "{order}").map_err(|e| format!("tell the supervisor to {order}: {e}"))?;
        let mut answer = String::new();
        self.answers.read_line(&mut answer).map_err(|e| format!("read the supervisor's answer: {e}"))?;
        if answer.trim() != "0" {
            let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
            return Err(format!(
                "pg_ctl {order} of the private cluster on port {} failed (exit {:?}):\n{log}",
                self.port,
                answer.trim()
            ));
        }
        if order == "start" {
            let bin = server_binaries()?;
            let deadline = Instant::now() + Duration::from_secs(60);
            while !accepting(&bin, self.port)? {
                if Instant::now() > deadline {
                    return Err(format!("postgres on port {} did not accept connections within 60 s", self.port));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }
}

impl Drop for Private {
    fn drop(&mut self) {
        // End of file: the supervisor stops the server and removes the dir.
        drop(self.orders.take());
        let _ = self.supervisor.wait();
    }
}
