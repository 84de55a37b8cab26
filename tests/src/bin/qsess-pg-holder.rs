//! Starts the shared PostgreSQL test cluster, prints `<postmaster pid> <cluster dir>`, and holds it
//! until stdin closes. The harness's own tests run it as a child process to check that a cluster
//! never outlives the process that started it, whether that process exits or is killed.

use std::io::{self, Read, Write};

fn main() {
    let cluster = qsess_tests::shared_cluster();
    let Some(pid) = cluster.pid() else {
        eprintln!("qsess-pg-holder: the shared cluster has no postmaster");
        std::process::exit(1);
    };
    let mut stdout = io::stdout();
    if writeln!(stdout, "{pid} {}", cluster.dir().display()).and_then(|()| stdout.flush()).is_err() {
        std::process::exit(1);
    }
    let _ = io::stdin().read_to_end(&mut Vec::new());
}
