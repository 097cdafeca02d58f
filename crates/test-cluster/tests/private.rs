//! A private cluster keeps its port and data across a stop and a start, refuses
//! connections while stopped, and is gone (dir and server) once dropped.

use sqlx::Connection;

/// Connects to `url` and runs `sql`; the error as text when it cannot.
async fn run(url: &str, sql: &str) -> Result<Vec<i64>, String> {
    let mut conn = sqlx::PgConnection::connect(url).await.map_err(|e| e.to_string())?;
    let rows: Vec<(i64,)> =
        sqlx::query_as(sqlx::AssertSqlSafe(sql.to_owned())).fetch_all(&mut conn).await.map_err(|e| e.to_string())?;
    conn.close().await.map_err(|e| e.to_string())?;
    Ok(rows.into_iter().map(|(v,)| v).collect())
}

#[test]
fn a_private_cluster_stops_and_starts_again_with_its_data() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut cluster = test_cluster::Private::start();
    let url = cluster.database_blocking();
    assert!(url.contains(&format!("@127.0.0.1:{}/", cluster.port())), "{url}");
    runtime.block_on(async {
        run(&url, "CREATE TABLE kept (n BIGINT)").await.ok();
        run(&url, "INSERT INTO kept VALUES (7) RETURNING n").await.unwrap();
    });

    cluster.stop();
    let refused = runtime.block_on(run(&url, "SELECT n FROM kept"));
    assert!(refused.is_err(), "a stopped cluster answered: {refused:?}");
    assert!(std::net::TcpStream::connect(("127.0.0.1", cluster.port())).is_err(), "something listens after stop");

    cluster.start_again();
    assert_eq!(runtime.block_on(run(&url, "SELECT n FROM kept")).unwrap(), vec![7], "the data did not survive");

    // Dropped: the server is stopped and nothing listens on its port any more.
    let port = cluster.port();
    drop(cluster);
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err(), "the server outlived its cluster");
}
