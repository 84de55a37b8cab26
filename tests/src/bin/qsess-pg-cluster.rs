//! Starts a private PostgreSQL cluster with the test harness's launcher, prints `<postmaster pid> <port>
//! <url>` on one line, and stops it (deleting its directory) when stdin closes. The benchmarks use it so
//! that the project has one PostgreSQL launcher, this harness's, whatever language drives it.

use std::io::{self, Read, Write};

fn main() {
    let cluster = qsess_tests::PgCluster::start();
    let Some(pid) = cluster.pid() else {
        eprintln!("qsess-pg-cluster: the cluster has no postmaster");
        std::process::exit(1);
    };
    let mut stdout = io::stdout();
    if writeln!(stdout, "{pid} {} {}", cluster.port(), cluster.url()).and_then(|()| stdout.flush()).is_err() {
        std::process::exit(1);
    }
    let _ = io::stdin().read_to_end(&mut Vec::new());
    drop(cluster);
}
