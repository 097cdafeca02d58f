//! The CA's files kept in the database: all go in or none, only into a database
//! that holds no CA, and of two instances putting at once exactly one wins.

use store::CaFile;
use tokio::task::JoinSet;

use crate::fresh::{Fresh, on_both_backends};

on_both_backends!(a_ca_goes_in_whole_once_and_reads_back, a_copy_and_a_backup_carry_the_ca_files);

fn files(root: &str) -> Vec<CaFile> {
    vec![
        CaFile { name: "ca/root.crt".into(), contents: root.as_bytes().to_vec(), private: false },
        CaFile { name: "ca/intermediate.key".into(), contents: b"ENCRYPTED".to_vec(), private: true },
        CaFile { name: "ca.toml".into(), contents: b"[policy]\n".to_vec(), private: false },
    ]
}

async fn a_ca_goes_in_whole_once_and_reads_back(db: &Fresh) {
    let store = db.open().await;
    assert!(store.ca_files().await.unwrap().is_empty());
    assert!(store.put_ca_files(&files("first")).await.unwrap());
    let mut kept = files("first");
    kept.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(store.ca_files().await.unwrap(), kept);
    // A second CA, even one that only shares no name but the root's: nothing of it goes in.
    assert!(!store.put_ca_files(&files("second")).await.unwrap());
    let other = vec![CaFile { name: "ca/other.crt".into(), contents: b"x".to_vec(), private: false }];
    assert!(!store.put_ca_files(&other).await.unwrap());
    assert_eq!(db.open().await.ca_files().await.unwrap(), kept, "reopened, the first CA's files alone");
}

/// Eight instances run `ca init` on one empty database at once: exactly one CA is kept, whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_instances_putting_a_ca_at_once_exactly_one_wins() {
    let db = Fresh::postgres().await;
    let mut puts = JoinSet::new();
    for i in 0..8 {
        let store = db.open().await;
        puts.spawn(async move { (i, store.put_ca_files(&files(&format!("root {i}"))).await.unwrap()) });
    }
    let winners: Vec<usize> = puts.join_all().await.into_iter().filter(|(_, won)| *won).map(|(i, _)| i).collect();
    assert_eq!(winners.len(), 1, "{winners:?}");
    let kept = db.open().await.ca_files().await.unwrap();
    assert_eq!(kept.len(), 3);
    let root = kept.iter().find(|f| f.name == "ca/root.crt").unwrap();
    assert_eq!(root.contents, format!("root {}", winners[0]).into_bytes());
}

/// `store copy` and `store backup` carry the CA's files; a target that holds a CA is refused.
async fn a_copy_and_a_backup_carry_the_ca_files(db: &Fresh) {
    let store = db.open().await;
    store.put_ca_files(&files("copied")).await.unwrap();
    let snapshot = store.export().await.unwrap();
    assert_eq!(snapshot.ca_files.len(), 3);
    for target in [Fresh::sqlite().await, Fresh::postgres().await] {
        let target = target.open().await;
        target.import(&snapshot).await.unwrap();
        assert_eq!(target.ca_files().await.unwrap(), store.ca_files().await.unwrap());
        let err = target.import(&snapshot).await.unwrap_err().to_string();
        assert!(err.contains("3 CA files"), "{err}");
    }
    let sealed = store::seal_backup(&snapshot, "a long enough passphrase").unwrap();
    let opened = store::open_backup(&sealed, "a long enough passphrase").unwrap();
    assert_eq!(opened.ca_files, snapshot.ca_files);
}
