//! [`HandshakeLoad`]: curl workers making one full TLS handshake per request
//! against a site, counting the failures, while a test takes a key server away.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::support::{curl, s};

/// Running workers and what they have seen.
pub struct HandshakeLoad {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicUsize>,
    failures: Arc<Mutex<Vec<String>>>,
    workers: Vec<JoinHandle<()>>,
}

impl HandshakeLoad {
    /// `workers` threads each requesting `https://HOST:PORT/PATH` on new connections
    /// (`host` resolved to 127.0.0.1, verified against `root`) until stopped.
    pub fn start(host: &str, https: u16, path: &str, root: &Path, workers: usize) -> HandshakeLoad {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicUsize::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let url = format!("https://{host}:{https}{path}");
        let resolve = format!("{host}:{https}:127.0.0.1");
        let workers = (0..workers)
            .map(|_| {
                let (stop, done, failures) = (stop.clone(), done.clone(), failures.clone());
                let (url, resolve, root) = (url.clone(), resolve.clone(), root.to_owned());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let r = curl(&["--cacert", s(&root), "--resolve", &resolve, &url]);
                        done.fetch_add(1, Ordering::Relaxed);
                        if r.status != 200 {
                            failures.lock().unwrap().push(format!("{r:?}"));
                        }
                    }
                })
            })
            .collect();
        HandshakeLoad { stop, done, failures, workers }
    }

    /// Requests made so far.
    pub fn done(&self) -> usize {
        self.done.load(Ordering::Relaxed)
    }

    /// Waits until `n` requests have been made (90 s at most).
    #[track_caller]
    pub fn wait_done(&self, n: usize) {
        let start = Instant::now();
        while self.done() < n {
            assert!(start.elapsed() < Duration::from_secs(90), "the load made {} of {n} requests", self.done());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the workers: the requests made and the failed ones.
    pub fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for w in self.workers {
            w.join().unwrap();
        }
        let failures = self.failures.lock().unwrap().clone();
        (self.done.load(Ordering::Relaxed), failures)
    }
}
